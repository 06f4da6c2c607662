"""
test_native.py — native (C) frames merged with Python frames, end to end,
through the library (target/unwind.h + sample/native.h) driven by
tests/e2e/native_probe.c, for every interpreter.

The probe is built here against build/libpyrometer.a; the C extension
tests/targets/native_ext.c is built against each interpreter's own headers.
Targets (tests/targets/native_calls.py) spend nearly all their time in C:
  spin  call_c() -> native_ext.spin(), a loop in the extension
  zlib  compress_data() -> zlib.compress() -> deflate() in libz
Each sample pauses the main thread, reads its Python frames while it is held,
resumes it, unwinds and merges; the C function must appear directly under
(inside) the Python frame that called it, with the Python frames and lines
intact above it.  Also: the target keeps running when the probe is killed by
SIGKILL while it holds the thread, and a thread is held for microseconds.
"""

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import REPO, marker_lines, target_path, wait_for

LIB = os.path.join(REPO, "build", "libpyrometer.a")
PROBE_SRC = os.path.join(REPO, "tests", "e2e", "native_probe.c")
EXT_SRC = os.path.join(REPO, "tests", "targets", "native_ext.c")
PKG_MODULES = ["libelf", "jansson", "zlib", "ncursesw", "libunwind-ptrace", "libunwind-generic"]
FALLBACK_LIBS = ["-lelf", "-ljansson", "-lz", "-lncursesw", "-ltinfo", "-lunwind-ptrace",
                 "-lunwind-generic", "-lunwind"]
PROBE_TIMEOUT = 60.0
# share of samples that must show the expected stack (the rest may be taken
# between two C calls, or be torn)
MIN_SHARE = 0.8


def _link_flags():
    """The Makefile's LDLIBS: pkg-config's answer, or its fallback list."""
    try:
        out = subprocess.run(["pkg-config", "--libs"] + PKG_MODULES, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, timeout=30)
        if out.returncode == 0:
            return out.stdout.decode().split() + ["-lm"]
    except (OSError, subprocess.SubprocessError):
        pass
    return FALLBACK_LIBS + ["-lm"]


def _compile(argv, what):
    res = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    if res.returncode != 0:
        pytest.fail("building %s failed:\n%s\n%s" % (what, " ".join(argv), res.stderr.decode()))


@pytest.fixture(scope="session")
def native_probe(tmp_path_factory):
    if not os.path.isfile(LIB):
        pytest.fail("%s not built (run `make`)" % LIB)
    out = str(tmp_path_factory.mktemp("probe") / "native_probe")
    _compile(["cc", "-std=gnu11", "-O2", "-g", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror",
              "-I" + os.path.join(REPO, "src"), "-o", out, PROBE_SRC, LIB] + _link_flags(),
             "native_probe")
    return out


_EXT_DIRS = {}


@pytest.fixture
def ext_dir(python, tmp_path_factory):
    """A directory holding native_ext built for this interpreter."""
    if python.path in _EXT_DIRS:
        return _EXT_DIRS[python.path]
    query = ("import sysconfig; print(sysconfig.get_paths()['include']); "
             "print(sysconfig.get_config_var('EXT_SUFFIX') or "
             "sysconfig.get_config_var('SO') or '.so')")
    lines = subprocess.run([python.path, "-c", query], stdout=subprocess.PIPE, timeout=30,
                           check=True).stdout.decode().split()
    include, suffix = lines[0], lines[1]
    if not os.path.isfile(os.path.join(include, "Python.h")):
        pytest.skip("no Python.h for %s in %s" % (python.path, include))
    directory = tmp_path_factory.mktemp("ext-" + python.id)
    _compile(["cc", "-shared", "-fPIC", "-O2", "-g", "-I" + include, "-o",
              str(directory / ("native_ext" + suffix)), EXT_SRC], "native_ext for " + python.id)
    _EXT_DIRS[python.path] = str(directory)
    return str(directory)


def run_probe(probe, pid, samples, *extra):
    """Run the probe; return (samples: list of dicts, stats dict)."""
    argv = [probe, str(pid), str(samples)] + [str(a) for a in extra]
    res = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         timeout=PROBE_TIMEOUT)
    out, err = res.stdout.decode(), res.stderr.decode()
    assert res.returncode == 0, "probe failed (%d)\n%s\n%s" % (res.returncode, out[-3000:], err)
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert records and "stats" in records[-1], out[-3000:]
    return records[:-1], records[-1]["stats"]


def good_samples(records, least):
    good = [r for r in records if "frames" in r]
    torn = [r for r in records if "error" in r]
    assert len(good) >= least, "only %d of %d samples merged; torn ones:\n%s" % (
        len(good), len(records), "\n".join(json.dumps(t) for t in torn[:5]))
    return good


def labels(sample):
    return ["%s:%s" % (f["kind"][0], f["name"]) for f in sample["frames"]]


def describe(samples, limit=5):
    return "\n".join(" ; ".join(labels(s)) for s in samples[:limit])


def python_frames(sample):
    return [(f["name"], os.path.basename(f["file"]), f["line"])
            for f in sample["frames"] if f["kind"] == "python"]


def test_native_spin_under_call_c(python, spawn, native_probe, ext_dir):
    target = spawn(python, "native_calls.py", "--mode", "spin", "--ext-dir", ext_dir)
    lines = marker_lines(target_path("native_calls.py"))
    records, stats = run_probe(native_probe, target.pid, 40, "--interval-ms", 5)
    good = good_samples(records, 30)

    expected_python = [("call_c", "native_calls.py", lines["call_c_spin"]),
                       ("main", "native_calls.py", lines["main_calls_work"]),
                       ("<module>", "native_calls.py", lines["module_calls_main"])]
    hits = [s for s in good if labels(s) == ["n:spin", "p:call_c", "p:main", "p:<module>"]]
    assert len(hits) >= MIN_SHARE * len(good), (
        "expected `spin` directly under call_c, then main and <module>; got:\n" + describe(good))
    for s in hits:
        assert python_frames(s) == expected_python, s
        assert s["frames"][0]["file"].startswith(ext_dir), s["frames"][0]
        assert s["native_rc"] == 0, "the unwind must reach the outermost frame: %r" % s
    assert stats["stop_timeouts"] == 0, stats


def test_native_zlib_under_compress(python, spawn, native_probe):
    target = spawn(python, "native_calls.py", "--mode", "zlib")
    lines = marker_lines(target_path("native_calls.py"))
    records, _ = run_probe(native_probe, target.pid, 40, "--interval-ms", 5)
    good = good_samples(records, 30)

    hits = 0
    for s in good:
        names = labels(s)
        if "p:compress_data" not in names:
            continue
        at = names.index("p:compress_data")
        # directly under the Python frame: the zlib module's function (named
        # PyZlib_compress in 2.7), or (interpreter stripped of static
        # symbols, Debian) libz's deflate
        if at > 0 and names[at - 1] in ("n:zlib_compress", "n:PyZlib_compress", "n:deflate",
                                        "n:compress", "n:compress2") and "n:deflate" in names[:at]:
            assert python_frames(s)[:1] == [("compress_data", "native_calls.py",
                                             lines["compress_call"])], s
            assert names[at:] == ["p:compress_data", "p:main", "p:<module>"], names
            hits += 1
    assert hits >= MIN_SHARE * len(good), (
        "expected zlib's C functions under compress_data; got:\n" + describe(good))


def test_native_all_keeps_interpreter_frames(python, spawn, native_probe, ext_dir):
    target = spawn(python, "native_calls.py", "--mode", "spin", "--ext-dir", ext_dir)
    records, _ = run_probe(native_probe, target.pid, 10, "--all", "--interval-ms", 5)
    good = good_samples(records, 6)
    for s in good:
        names = labels(s)
        if names[:2] != ["n:spin", "p:call_c"] and names[:1] != ["n:spin"]:
            continue
        # the process's own entry point stays, outermost
        assert names[-1] in ("n:_start", "n:__libc_start_main", "n:main") or \
            names[-1].startswith("n:__libc_start_main"), names
        assert "p:<module>" in names, names
        assert names.index("p:<module>") < len(names) - 1, names


def test_native_pause_is_short(python, spawn, native_probe, ext_dir):
    """How long a thread is held per unwind (registers + stack copy)."""
    target = spawn(python, "native_calls.py", "--mode", "spin", "--ext-dir", ext_dir)
    _, stats = run_probe(native_probe, target.pid, 100, "--walk-after", "--interval-ms", 2)
    print("%s: held median %.1f us, max %.1f us; stop wait median %.1f us; stack copy %d B" % (
        python.id, stats["median_pause_ns"] / 1e3, stats["max_pause_ns"] / 1e3,
        stats["median_stop_wait_ns"] / 1e3, stats["stack_copy_size"]))
    # generous: a loaded CI machine preempts us at times, but never for long
    assert stats["median_pause_ns"] < 5e6, stats
    assert stats["unwinds"] >= 90, stats


def _state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def _ticks(path):
    try:
        with open(path) as f:
            return int(f.read() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def test_native_sigkill_while_held_leaves_target_running(python, spawn, native_probe, ext_dir,
                                                          tmp_path):
    tick = str(tmp_path / "tick")
    target = spawn(python, "native_calls.py", "--mode", "spin", "--ext-dir", ext_dir,
                   "--tick", tick)
    wait_for(lambda: _ticks(tick) >= 1, 20, "the target's first tick")
    probe = subprocess.Popen([native_probe, str(target.pid), "1", "--hold-ms", "30000"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = probe.stdout.readline().decode()
        assert json.loads(line) == {"held": 0}, line
        assert _state(target.pid) == "t", "the held thread must be in a ptrace stop"
        held_at = _ticks(tick)
        time.sleep(0.2)
        assert _ticks(tick) == held_at, "the thread ran while held"
        probe.send_signal(signal.SIGKILL)
        probe.wait(timeout=10)
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait(timeout=10)
        probe.stdout.close()
        probe.stderr.close()
    wait_for(lambda: _state(target.pid) in ("R", "S"), 10,
             "the target to leave its ptrace stop after the probe died")
    after = _ticks(tick)
    wait_for(lambda: _ticks(tick) >= after + 2, 20, "the target to keep running")
    assert target.proc.poll() is None, "the target died"
