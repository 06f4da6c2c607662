"""
test_core.py — `pyrometer dump --core CORE [--exe EXE]` must print the stacks a
live `dump --json -p PID` saw in the same process just before the core was
written.

For every interpreter a parked target (sleeper.py: one thread four frames
deep; a copy of threads10.py: eleven threads) is dumped live, then written to a
core with gdb's `gcore -o PREFIX PID`, and by the kernel (SIGABRT with
RLIMIT_CORE unlimited, when /proc/sys/kernel/core_pattern writes a file rather
than piping to systemd-coredump or apport).  `dump --core --json` must give
the same threads (OS and pthread ids) and every frame's function, file and
line; `dump --core` text must say "(from a core file)" and show the same
frames.  A thread the kernel killed with SIGABRT carries "signal": 6.

Then the files a core depends on: an executable that is gone must fail with a
message naming it and suggesting --exe; --exe with a copy must work; --exe
with another binary must be refused; a file that is not a core, and one that
does not exist, must be refused with one error line and their exit codes.

Cores are big, so each test deletes its core as soon as it is read (the suite
holds at most one at a time), and the targets are made small: MALLOC_ARENA_MAX=1
(otherwise each thread that ever called malloc leaves a 64 MB glibc arena,
which gcore writes out in full: ~840 MB for threads10.py), and the threads10
copy used here sets threading.stack_size(256 KiB) before starting its workers
(tests/targets/threads10.py itself is left alone; other tests use it).
"""

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import time

import pytest

from conftest import (DEBIAN_PYTHON, PYROMETER, TARGETS, Interpreter, Target, _query_version,
                      dump_json, json_frames, marker_lines, parse_label, run_pyrometer, target_path)

GCORE_TIMEOUT = 120.0
DEATH_TIMEOUT = 120.0
CORE_PATTERN = "/proc/sys/kernel/core_pattern"
WORKER_STACK = 256 * 1024
WARNING_PREFIX = "pyrometer: warning: "

# SYS_tgkill, to send SIGABRT to one chosen thread (Python has no os.tgkill).
TGKILL = {"x86_64": 234, "aarch64": 131, "i686": 270, "i386": 270, "armv7l": 268, "ppc64le": 250,
          "s390x": 241, "riscv64": 131}


@pytest.fixture(autouse=True)
def small_targets(monkeypatch):
    """One malloc arena in every target this module starts (see the docstring)."""
    monkeypatch.setenv("MALLOC_ARENA_MAX", "1")


@pytest.fixture(scope="module")
def gcore_bin():
    path = shutil.which("gcore")
    if path is None:
        pytest.fail("gdb's gcore is not installed (apt-get install gdb)")
    return path


@pytest.fixture
def threads10_copy(tmp_path):
    """tests/targets/threads10.py with 256 KiB thread stacks, next to a copy of
    _parked.py (which it imports from its own directory)."""
    directory = tmp_path / "small"
    directory.mkdir()
    with open(target_path("threads10.py"), encoding="utf-8") as f:
        source = f.read()
    lines = source.split("\n")
    assert "import threading" in lines, "threads10.py no longer has an `import threading` line"
    at = lines.index("import threading") + 1
    lines.insert(at, "threading.stack_size(%d)  # test_core.py: small cores" % WORKER_STACK)
    path = directory / "threads10.py"
    path.write_text("\n".join(lines), encoding="utf-8")
    shutil.copy2(os.path.join(TARGETS, "_parked.py"), str(directory / "_parked.py"))
    return str(path)


# ----------------------------------------------------------------------------
# Writing and reading cores


def remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def gcore(pid, directory):
    """Write a core of the running process pid with gdb's gcore; return its path."""
    prefix = os.path.join(str(directory), "gcore")
    path = "%s.%d" % (prefix, pid)
    try:
        out = subprocess.run(["gcore", "-o", prefix, str(pid)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, timeout=GCORE_TIMEOUT)
    except subprocess.TimeoutExpired:
        remove(path)
        pytest.fail("gcore of %d took more than %ss" % (pid, GCORE_TIMEOUT))
    if out.returncode != 0 or not os.path.isfile(path):
        remove(path)
        pytest.fail("gcore -o %s %d failed (exit %d):\n%s" % (prefix, pid, out.returncode,
                                                               out.stdout.decode()[-4000:]))
    return path


def dump_core(core, *extra):
    """`dump --core CORE --json [extra]`: the threads, checked like dump_json's,
    after requiring a clean stderr (no mapped file missing or changed)."""
    res = run_pyrometer(["dump", "--core", core, "--json"] + list(extra)).expect(0)
    assert WARNING_PREFIX not in res.stderr and not res.stderr.strip(), (
        "no mapped file may be missing or changed\n" + res.describe())
    try:
        threads = json.loads(res.stdout)
    except ValueError as e:
        pytest.fail("dump --core --json printed invalid JSON (%s)\n%s" % (e, res.describe()))
    assert isinstance(threads, list), "dump --core --json must print an array\n" + res.describe()
    for t in threads:
        for key in ("pid", "thread_id", "os_thread_id", "thread_name", "active", "owns_gil", "frames"):
            assert key in t, "thread object lacks %r: %r" % (key, t)
        assert "signal" not in t or isinstance(t["signal"], int), t
        for fr in t["frames"]:
            for key in ("name", "filename", "short_filename", "line"):
                assert key in fr, "frame object lacks %r: %r" % (key, fr)
    return threads


def core_error(core, code, *extra):
    """`dump --core CORE [extra]` must fail with `code` and one error line; return its message."""
    res = run_pyrometer(["dump", "--core", core] + list(extra)).expect(code)
    assert not res.stdout.strip(), "a failed dump must print nothing on stdout\n" + res.describe()
    return res.stderr.strip()[len("pyrometer: error: "):]


def assert_same_stacks(live, cored, what):
    """The core's threads and frames must be the live dump's: same threads (by
    OS thread id, and the same pthread ids), same function, file and line."""
    live_by_tid = {t["os_thread_id"]: t for t in live}
    core_by_tid = {t["os_thread_id"]: t for t in cored}
    assert sorted(live_by_tid) == sorted(core_by_tid), (
        "%s: threads differ\nlive: %s\ncore: %s" % (what, sorted(live_by_tid), sorted(core_by_tid)))
    for tid, lt in live_by_tid.items():
        ct = core_by_tid[tid]
        assert ct["thread_id"] == lt["thread_id"], "%s: thread %d: pthread ids differ" % (what, tid)
        assert ct["thread_name"] == lt["thread_name"], "%s: thread %d: names differ" % (what, tid)
        live_frames = [(f["name"], f["filename"], f["line"]) for f in lt["frames"]]
        core_frames = [(f["name"], f["filename"], f["line"]) for f in ct["frames"]]
        assert core_frames == live_frames, "%s: thread %d:\nlive: %s\ncore: %s" % (
            what, tid, live_frames, core_frames)


CORE_THREAD_RE = re.compile(
    r'^Thread (?P<tid>\d+)'
    r'(?: \((?:active|idle|stopped by signal (?P<signal>\d+): [^()]*)\))?'
    r'(?P<gil> \+GIL)?(?::(?: "(?P<name>.*)")?)?$')


def parse_core_text(text):
    """`dump --core` text -> dict(pid, command, threads=[dict(tid, signal, name, frames)])."""
    lines = text.splitlines()
    assert len(lines) >= 2, "dump --core output too short:\n%s" % text
    m = re.match(r"^Process (\d+): (.*) \(from a core file\)$", lines[0])
    assert m, "first line %r is not `Process PID: COMMAND (from a core file)`" % lines[0]
    result = {"pid": int(m.group(1)), "command": m.group(2)}
    assert re.match(r"^Python v\d+\.\d+\.\d+\S* \(.*\)$", lines[1]), (
        "second line %r is not `Python vX.Y.Z (PATH)`" % lines[1])
    threads = []
    for line in lines[2:]:
        if not line.strip():
            continue
        if line.startswith("    "):
            assert threads, "frame line %r before any Thread line" % line
            threads[-1]["frames"].append(parse_label(line[4:]))
            continue
        m = CORE_THREAD_RE.match(line)
        assert m, "dump --core line %r is neither a Thread line nor a 4-space frame" % line
        threads.append({"tid": int(m.group("tid")), "name": m.group("name"), "frames": [],
                        "signal": int(m.group("signal")) if m.group("signal") else None})
    result["threads"] = threads
    return result


def check_text(core, live, pid, command):
    """`dump --core` text: "(from a core file)", the pid and command, and the live
    dump's threads with the same frames (function, short file, line)."""
    res = run_pyrometer(["dump", "--core", core]).expect(0)
    assert not res.stderr.strip(), res.describe()
    dump = parse_core_text(res.stdout)
    assert dump["pid"] == pid, res.stdout
    if command is not None:
        assert dump["command"] == command, res.stdout
    by_tid = {t["tid"]: t for t in dump["threads"]}
    assert sorted(by_tid) == sorted(t["os_thread_id"] for t in live), res.stdout
    for lt in live:
        t = by_tid[lt["os_thread_id"]]
        assert t["frames"] == json_frames(lt), "thread %d:\nlive: %s\ncore text:\n%s" % (
            lt["os_thread_id"], json_frames(lt), res.stdout)
        if lt["thread_name"]:
            assert t["name"] == lt["thread_name"], res.stdout
    return dump


def sleeper_check(python, threads):
    """The live dump itself must show sleeper.py parked (so an empty match cannot pass)."""
    lines = marker_lines(target_path("sleeper.py"))
    assert len(threads) == 1, threads
    top = threads[0]["frames"][0]
    assert (top["name"], top["line"]) == (python.name("Parker.park.<locals>.inner"), lines["inner_sleep"]), top


def threads10_check(threads):
    """The live dump of the threads10 copy: eleven threads, each with frames."""
    assert len(threads) == 11, threads
    assert all(t["frames"] for t in threads), threads


# ----------------------------------------------------------------------------
# Cores written by gdb


def test_gcore_sleeper(python, spawn, gcore_bin, tmp_path):
    target = spawn(python, "sleeper.py", threads=1)
    live = dump_json(target.pid)
    sleeper_check(python, live)
    core = gcore(target.pid, tmp_path)
    try:
        cored = dump_core(core)
        assert_same_stacks(live, cored, "gcore of sleeper.py")
        assert all(t["pid"] == target.pid for t in cored), cored
        assert not any("signal" in t for t in cored), "gcore stopped no thread by a signal: %r" % cored
        check_text(core, live, target.pid, "%s %s" % (python.path, target_path("sleeper.py")))
    finally:
        remove(core)


def test_gcore_threads10(python, spawn, gcore_bin, threads10_copy, tmp_path):
    target = spawn(python, threads10_copy, threads=11)
    live = dump_json(target.pid)
    threads10_check(live)
    core = gcore(target.pid, tmp_path)
    try:
        cored = dump_core(core)
        assert_same_stacks(live, cored, "gcore of threads10.py")
        assert all(t["pid"] == target.pid for t in cored), cored
        check_text(core, live, target.pid, "%s %s" % (python.path, threads10_copy))
    finally:
        remove(core)


# ----------------------------------------------------------------------------
# Cores written by the kernel


def kernel_core_pattern():
    """The core_pattern when the kernel writes plain files; skip otherwise."""
    try:
        with open(CORE_PATTERN) as f:
            pattern = f.read().strip()
    except OSError as e:
        pytest.skip("cannot read %s: %s" % (CORE_PATTERN, e))
    if pattern.startswith("|"):
        pytest.skip("core dumps go to a pipe (%s = %r, e.g. systemd-coredump or apport): "
                    "the SIGABRT variants need a file pattern" % (CORE_PATTERN, pattern))
    return pattern


class CoreTarget(Target):
    """A target run in `cwd` with RLIMIT_CORE unlimited, so SIGABRT leaves a core there."""

    def __init__(self, argv, stderr_path, cwd):
        self.argv = argv
        self.stderr_path = stderr_path
        self.stderr_file = open(stderr_path, "wb")

        def unlimited_cores():
            resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.stderr_file, cwd=cwd, preexec_fn=unlimited_cores)
        self.info = None
        self._buf = b""


def find_kernel_core(pattern, cwd, pid, since):
    """The core the kernel wrote for pid under `pattern`, or None."""
    directory = os.path.dirname(pattern) if pattern.startswith("/") else cwd
    try:
        names = os.listdir(directory)
    except OSError:
        return None
    candidates = []
    for name in names:
        path = os.path.join(directory, name)
        if not name.startswith("core") and str(pid) not in name:
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        if os.path.isfile(path) and st.st_mtime >= since - 1:
            candidates.append((str(pid) in name, st.st_mtime, path))
    return max(candidates)[2] if candidates else None


def remove_cwd_cores(cwd):
    """Whatever core files the kernel left in the target's directory."""
    for name in os.listdir(cwd):
        if name.startswith("core"):
            remove(os.path.join(cwd, name))


def abort_and_find_core(target, pattern, cwd, tid=None):
    """SIGABRT the target (the process, or its thread `tid` via tgkill), wait for it
    to die of it (so the kernel has finished writing), and return the core's path;
    skip when the kernel wrote none."""
    since = time.time()
    if tid is None:
        os.kill(target.pid, signal.SIGABRT)
    else:
        import ctypes
        number = TGKILL.get(os.uname().machine)
        if number is None:
            pytest.skip("no SYS_tgkill number known for %s" % os.uname().machine)
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syscall(number, target.pid, tid, int(signal.SIGABRT)) != 0:
            pytest.fail("tgkill(%d, %d, SIGABRT): %s" % (target.pid, tid, os.strerror(ctypes.get_errno())))
    try:
        status = target.proc.wait(timeout=DEATH_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail("target %d did not die of SIGABRT within %ss" % (target.pid, DEATH_TIMEOUT))
    assert status == -signal.SIGABRT, "target exited with %s, not SIGABRT" % status
    core = find_kernel_core(pattern, cwd, target.pid, since)
    if core is None:
        pytest.skip("the kernel wrote no core for pid %d (core_pattern %r, cwd %s): cores may be "
                    "disabled for this container" % (target.pid, pattern, cwd))
    return core


def test_kernel_core_sleeper(python, tmp_path):
    pattern = kernel_core_pattern()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    target = CoreTarget([python.path, target_path("sleeper.py")], str(tmp_path / "target.stderr"), str(cwd))
    core = None
    try:
        target.wait_ready()
        target.wait_threads(1)
        live = dump_json(target.pid)
        sleeper_check(python, live)
        core = abort_and_find_core(target, pattern, str(cwd))
        cored = dump_core(core)
        assert_same_stacks(live, cored, "kernel core of sleeper.py")
        assert cored[0]["pid"] == target.pid, cored
        assert cored[0].get("signal") == signal.SIGABRT, "the aborted thread must carry \"signal\": 6: %r" % cored
    finally:
        target.stop()
        if core:
            remove(core)
        remove_cwd_cores(str(cwd))


def test_kernel_core_crashed_thread(python, threads10_copy, tmp_path):
    """A crash in one worker: SIGABRT sent to that thread alone (tgkill) kills the
    process through the kernel's core path.  The core has the live stacks, and the
    thread that got the signal carries "signal": 6 (JSON) and "stopped by signal 6"
    (text).  The kernel writes pr_cursig into every thread's NT_PRSTATUS; only the
    first one (followed by NT_SIGINFO) is the thread that took the signal, so the
    other threads must not claim it."""
    pattern = kernel_core_pattern()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    target = CoreTarget([python.path, threads10_copy], str(tmp_path / "target.stderr"), str(cwd))
    core = None
    try:
        info = target.wait_ready()
        target.wait_threads(11)
        live = dump_json(target.pid)
        threads10_check(live)
        victim = info["workers"][3]["native_id"]
        assert victim and victim != target.pid, info
        core = abort_and_find_core(target, pattern, str(cwd), tid=victim)
        cored = dump_core(core)
        assert_same_stacks(live, cored, "kernel core of threads10.py, worker-3 aborted")
        by_tid = {t["os_thread_id"]: t for t in cored}
        assert by_tid[victim].get("signal") == signal.SIGABRT, (
            "worker-3 (%d) took SIGABRT and must carry \"signal\": 6: %r" % (victim, by_tid[victim]))
        text = check_text(core, live, target.pid, None)
        text_signals = {t["tid"]: t["signal"] for t in text["threads"]}
        assert text_signals[victim] == signal.SIGABRT, "text must say worker-3 was stopped by signal 6"
        others = sorted(tid for tid, t in by_tid.items() if tid != victim and "signal" in t)
        text_others = sorted(tid for tid, sig in text_signals.items() if tid != victim and sig)
        assert others == text_others, "JSON and text disagree on which threads carry a signal"
        # only the thread that took SIGABRT carries it (the kernel copies the
        # signal into every thread's record; the first record is the real one)
        assert not others, "threads %s did not take SIGABRT but carry \"signal\"" % others
    finally:
        target.stop()
        if core:
            remove(core)
        remove_cwd_cores(str(cwd))


# ----------------------------------------------------------------------------
# The files a core needs


@pytest.fixture
def debian_python():
    if not os.access(DEBIAN_PYTHON, os.X_OK):
        pytest.skip("Debian CPython 3.11 not installed: looked for %s" % DEBIAN_PYTHON)
    return Interpreter("debian-3.11", DEBIAN_PYTHON, _query_version(DEBIAN_PYTHON))


def test_missing_executable_and_exe(debian_python, spawn, gcore_bin, tmp_path):
    """A core whose executable is gone names it and suggests --exe (exit 2, a
    missing file); --exe with a copy of it reads the same stacks; --exe with
    another binary is refused (exit 1)."""
    copy = str(tmp_path / "python3.11-copy")
    shutil.copy2(debian_python.path, copy)
    target = spawn(copy, "sleeper.py", threads=1)
    python = debian_python
    live = dump_json(target.pid)
    sleeper_check(python, live)
    core = gcore(target.pid, tmp_path)
    try:
        target.stop()
        os.unlink(copy)

        message = core_error(core, 2)
        assert copy in message and "--exe" in message, message

        cored = dump_core(core, "--exe", debian_python.path)
        assert_same_stacks(live, cored, "core read with --exe")

        other = shutil.which("gdb")
        message = core_error(core, 1, "--exe", other)
        assert other in message and "not the executable" in message, message
    finally:
        remove(core)


def test_not_a_core(tmp_path):
    message = core_error(PYROMETER, 1)
    assert PYROMETER in message and "is not a core file" in message and "executable" in message, message

    text = tmp_path / "notes.txt"
    text.write_text("not an ELF file at all\n" * 10)
    message = core_error(str(text), 1)
    assert str(text) in message and "is not a core file" in message, message

    missing = str(tmp_path / "no-such-core")
    message = core_error(missing, 2)
    assert missing in message, message
