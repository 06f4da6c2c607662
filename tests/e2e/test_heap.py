"""
test_heap.py — `pyrometer heap`: the census of GC-tracked objects by type,
--diff (the types that grew, the RSS trend), --json, --blocking, and its
errors, on every interpreter.

The growth test is the issue's: the target (tests/targets/heap_growth.py)
appends 10 000 Session instances to a global list between two censuses, and
`heap --diff` must show Session grown by exactly 10 000.  The handshake is
deterministic: the test waits for heap's "census 1 of 2 done" line, stops
heap (SIGSTOP, checked in /proc), makes the target append (SIGUSR1) and
waits for its "appended 10000" line, then lets heap go on and ends its wait
at once with SIGINT (its "take the second census now").  --diff is 60 s, so
heap cannot reach its second census on its own before it is stopped; the
JSON variant also checks the second census started after the append.
"""

import json
import os
import select
import signal
import subprocess
import time

import pytest

from conftest import PYROMETER, REPO, run_pyrometer, wait_for
from test_errors import (NOBODY, binary_for_nobody, fake_python315, reaped_pid,  # noqa: F401
                         sleep_process)

BATCH = 10000
WIDGETS = 1234
CENSUS_KEYS = ("started", "seconds", "objects", "bytes", "unreadable", "rss_bytes", "paused",
               "interpreters", "retries", "relinks", "copied_bytes", "syscalls", "types")
GROWTH_KEYS = ("type", "count_before", "count_after", "count_delta", "bytes_before",
               "bytes_after", "bytes_delta")


def class_name(python, name):
    """How heap names a class defined in the target's __main__: module.qualname
    on 3.8+, where it reads the class's __module__; tp_name (the bare name)
    on 2.7-3.7."""
    return "__main__." + name if python.version[:2] >= (3, 8) else name


def check_census(doc, context):
    for key in CENSUS_KEYS:
        assert key in doc, "census lacks %r\n%s" % (key, context)
    assert isinstance(doc["types"], list) and doc["types"], context
    for entry in doc["types"]:
        assert set(entry) == {"type", "count", "bytes"}, entry
        assert isinstance(entry["type"], str) and entry["count"] > 0 and entry["bytes"] >= 0, entry
    sizes = [(e["bytes"], e["count"]) for e in doc["types"]]
    assert sizes == sorted(sizes, reverse=True), "types must be sorted by size, then count\n" + context
    assert doc["bytes"] == sum(e["bytes"] for e in doc["types"]), context
    assert doc["objects"] == sum(e["count"] for e in doc["types"]) + doc["unreadable"], context
    assert doc["unreadable"] == 0, "objects with unreadable types in an idle target\n" + context
    assert doc["rss_bytes"] > 1 << 20, context
    assert doc["interpreters"] == 1, context
    assert doc["seconds"] >= 0 and doc["started"] > 1.6e9, context
    names = [e["type"] for e in doc["types"]]
    assert len(names) == len(set(names)), "a type name listed twice\n" + context
    return {e["type"]: e for e in doc["types"]}


def heap_json(args):
    res = run_pyrometer(["heap", "--json"] + [str(a) for a in args]).expect(0)
    try:
        return json.loads(res.stdout), res
    except ValueError as e:
        pytest.fail("heap --json printed invalid JSON (%s)\n%s" % (e, res.describe()))


def rss_of(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# ----------------------------------------------------------------------------
# One census


def test_census_counts_exact(python, spawn):
    target = spawn(python, "heap_growth.py", WIDGETS)
    info = target.info
    doc, res = heap_json(["-p", target.pid])
    assert doc["pid"] == target.pid and doc["python_version"] == info["version"], res.describe()
    assert os.path.basename(doc["python_binary"]).startswith(("libpython", "python")), doc
    types = check_census(doc["census"], res.describe())
    widget = types.get(class_name(python, "Widget"))
    assert widget is not None, "no %s in the census\n%s" % (class_name(python, "Widget"),
                                                          res.describe())
    assert widget["count"] == WIDGETS, widget
    assert widget["bytes"] == WIDGETS * info["widget_basicsize"], (widget, info)
    assert class_name(python, "Session") not in types, "no Session exists yet\n" + res.describe()
    # the list holding them, and builtins named as Python names them
    assert "list" in types and "function" in types and "type" in types, sorted(types)
    assert doc["census"]["paused"] is True
    rss = rss_of(target.pid)
    assert rss / 2 < doc["census"]["rss_bytes"] < rss * 2, (rss, doc["census"]["rss_bytes"])


def test_census_text(python, spawn):
    target = spawn(python, "heap_growth.py", WIDGETS)
    info = target.info
    res = run_pyrometer(["heap", "-p", target.pid, "--top", 0]).expect(0)
    lines = res.stdout.splitlines()
    assert lines[0].startswith("Process %d: " % target.pid), res.describe()
    assert lines[1].startswith("Python v%s (" % info["version"]), res.describe()
    assert lines[2].startswith("Heap census: "), res.describe()
    assert "took " in lines[2] and "RSS " in lines[2], res.describe()
    header = lines.index("       count          bytes  type")
    rows = [l.split(None, 2) for l in lines[header + 1:] if l.strip()]
    by_name = {r[2]: (int(r[0]), int(r[1])) for r in rows}
    assert by_name[class_name(python, "Widget")] == (WIDGETS, WIDGETS * info["widget_basicsize"]), \
        res.describe()
    sizes = [size for _, size in by_name.values()]
    assert [int(r[1]) for r in rows] == sorted(sizes, reverse=True), res.describe()
    # --top N: N rows and a line for the rest
    res = run_pyrometer(["heap", "-p", target.pid, "-n", 3]).expect(0)
    lines = res.stdout.splitlines()
    header = lines.index("       count          bytes  type")
    assert len(lines) == header + 5, res.describe()
    assert "more types; --top 0 shows all)" in lines[-1], res.describe()


def test_census_pauses_only_while_counting(python, spawn):
    """By default the target is stopped while it is counted, and only then:
    it runs (and handles a signal) afterwards."""
    target = spawn(python, "heap_growth.py", WIDGETS)
    doc, res = heap_json(["-p", target.pid])
    types = check_census(doc["census"], res.describe())
    assert doc["census"]["paused"] is True, res.describe()
    assert types[class_name(python, "Widget")]["count"] == WIDGETS, res.describe()
    os.kill(target.pid, signal.SIGUSR1)
    wait_target_line(target, b"appended %d" % BATCH, 20)
    with open("/proc/%d/status" % target.pid) as f:
        assert "TracerPid:\t0\n" in f.read(), "heap left the target traced"


def test_census_nonblocking(python, spawn):
    """--nonblocking never stops the target; on a target at rest the counts are exact."""
    target = spawn(python, "heap_growth.py", WIDGETS)
    doc, res = heap_json(["--nonblocking", "-p", target.pid])
    types = check_census(doc["census"], res.describe())
    assert doc["census"]["paused"] is False, res.describe()
    assert doc["census"]["relinks"] == 0 and doc["census"]["retries"] == 0, res.describe()
    assert "warning" not in res.stderr, res.describe()
    widget = types[class_name(python, "Widget")]
    assert widget == {"type": class_name(python, "Widget"), "count": WIDGETS,
                      "bytes": WIDGETS * target.info["widget_basicsize"]}, widget


def test_max_copy_limit(spawn, python):
    """A census that would copy more than --max-copy says so and which option raises it."""
    target = spawn(python, "heap_growth.py", 200000)
    res = run_pyrometer(["heap", "--max-copy", 1, "-p", target.pid]).expect(1)
    assert "--max-copy" in res.stderr and "1 MiB" in res.stderr, res.describe()


# ----------------------------------------------------------------------------
# --diff


def wait_target_line(target, line, timeout):
    """Read the target's stdout until `line` (bytes, a whole line) arrives."""
    fd = target.proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    while line not in target._buf.split(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail("target did not print %r within %ss; stdout: %r\nstderr:\n%s"
                        % (line, timeout, target._buf, target.stderr_text()))
        readable, _, _ = select.select([fd], [], [], min(remaining, 0.5))
        if readable:
            chunk = os.read(fd, 65536)
            if not chunk:
                pytest.fail("target exited before printing %r" % line)
            target._buf += chunk


class HeapRun:
    """A `pyrometer heap` run whose stderr is read while it runs."""

    def __init__(self, args):
        self.argv = [PYROMETER, "heap"] + [str(a) for a in args]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=REPO, start_new_session=True)
        self.err = b""

    def wait_stderr(self, needle, timeout):
        fd = self.proc.stderr.fileno()
        deadline = time.monotonic() + timeout
        while needle not in self.err:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                pytest.fail("heap did not print %r within %ss\ncommand: %s\nstderr: %r"
                            % (needle, timeout, " ".join(self.argv), self.err))
            readable, _, _ = select.select([fd], [], [], min(remaining, 0.5))
            if readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    out = self.proc.stdout.read()
                    self.proc.wait(timeout=10)
                    pytest.fail("heap exited (%s) before printing %r\nstdout: %r\nstderr: %r"
                                % (self.proc.returncode, needle, out, self.err))
                self.err += chunk

    def state(self):
        with open("/proc/%d/stat" % self.proc.pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]

    def finish(self, timeout=30):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("heap hung\ncommand: %s" % " ".join(self.argv))
        assert self.proc.returncode >= 0, "heap died by signal %d" % -self.proc.returncode
        return self.proc.returncode, out.decode("utf-8"), (self.err + err).decode("utf-8")

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def diff_with_growth(target, extra_args):
    """Run heap --diff 60 over the handshake (module docstring); return
    (exit code, stdout, stderr, wall time the target reported the append)."""
    heap = HeapRun(["--diff", 60, "-p", target.pid] + extra_args)
    try:
        heap.wait_stderr(b"census 1 of 2 done", 30)
        os.kill(heap.proc.pid, signal.SIGSTOP)
        wait_for(lambda: heap.state() in ("T", "t"), 10, "heap to stop")
        os.kill(target.pid, signal.SIGUSR1)
        wait_target_line(target, b"appended %d" % BATCH, 30)
        appended_at = time.time()
        os.kill(heap.proc.pid, signal.SIGCONT)
        os.kill(heap.proc.pid, signal.SIGINT)   # end the wait: census 2 now
        code, out, err = heap.finish()
    finally:
        heap.kill()
    return code, out, err, appended_at


def test_diff_shows_session_growth(python, spawn):
    """The issue's test: 10 000 Session instances appended between the two
    censuses show as Session growing by 10 000 (text output)."""
    target = spawn(python, "heap_growth.py", WIDGETS)
    bs = target.info["session_basicsize"]
    code, out, err, _ = diff_with_growth(target, [])
    context = "stdout:\n%s\nstderr:\n%s" % (out, err)
    assert code == 0, context
    lines = out.splitlines()
    assert lines[2].startswith("Census 1: ") and lines[3].startswith("Census 2: "), context
    assert lines[4].startswith("RSS: ") and " -> " in lines[4] and "/s" in lines[4], context
    start = lines.index("Types that grew:")
    assert lines[start + 1].split() == ["+count", "+bytes", "count", "bytes", "type"], context
    grew = {}
    for line in lines[start + 2:]:
        if not line.strip():
            break
        fields = line.split(None, 4)
        grew[fields[4]] = tuple(int(f) for f in fields[:4])
    name = class_name(python, "Session")
    assert grew.get(name) == (BATCH, BATCH * bs, BATCH, BATCH * bs), \
        "%s must grow by exactly %d objects of %d bytes\n%s" % (name, BATCH, bs, context)
    assert class_name(python, "Widget") not in grew, context


def test_diff_json(python, spawn):
    target = spawn(python, "heap_growth.py", WIDGETS)
    info = target.info
    code, out, err, appended_at = diff_with_growth(target, ["--json"])
    context = "stdout:\n%s\nstderr:\n%s" % (out[-3000:], err)
    assert code == 0, context
    doc = json.loads(out)
    assert set(doc) == {"pid", "python_version", "python_binary", "interval_seconds", "before",
                        "after", "growth", "rss"}, sorted(doc)
    before = check_census(doc["before"], context)
    after = check_census(doc["after"], context)
    session, widget = class_name(python, "Session"), class_name(python, "Widget")
    assert session not in before and after[session]["count"] == BATCH, context
    assert before[widget] == after[widget], context
    # the second census was taken after the target appended, the first before
    assert doc["after"]["started"] > appended_at > doc["before"]["started"], context
    assert 0 < doc["interval_seconds"] < 60, context
    growth = {g["type"]: g for g in doc["growth"]}
    for g in doc["growth"]:
        assert set(g) == set(GROWTH_KEYS), g
        assert g["count_delta"] > 0 or g["bytes_delta"] > 0, g
    deltas = [(g["bytes_delta"], g["count_delta"]) for g in doc["growth"]]
    assert deltas == sorted(deltas, reverse=True), "growth must be sorted by size growth"
    assert growth[session] == {
        "type": session, "count_before": 0, "count_after": BATCH, "count_delta": BATCH,
        "bytes_before": 0, "bytes_after": BATCH * info["session_basicsize"],
        "bytes_delta": BATCH * info["session_basicsize"]}, growth[session]
    assert widget not in growth, context
    rss = doc["rss"]
    assert set(rss) == {"before", "after", "delta", "per_second", "min", "max", "samples"}, rss
    assert rss["before"] == doc["before"]["rss_bytes"] and rss["after"] == doc["after"]["rss_bytes"]
    assert rss["delta"] == rss["after"] - rss["before"], rss
    assert rss["min"] <= min(rss["before"], rss["after"]) and rss["max"] >= rss["after"], rss
    assert rss["samples"][0] == [0.0, rss["before"]] and rss["samples"][-1][1] == rss["after"], rss


def test_diff_target_exits_during_wait(python, spawn):
    target = spawn(python, "heap_growth.py", WIDGETS)
    heap = HeapRun(["--diff", 60, "-p", target.pid])
    try:
        heap.wait_stderr(b"census 1 of 2 done", 30)
        target.proc.kill()
        target.proc.wait(timeout=10)
        os.kill(heap.proc.pid, signal.SIGINT)
        code, out, err = heap.finish()
    finally:
        heap.kill()
    lines = [l for l in err.splitlines() if l.strip()]
    assert code == 2, (code, out, err)
    assert lines[-1].startswith("pyrometer: error: ") and len(lines) == 2, err


# ----------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize("args", [
    ["heap"],
    ["heap", "-p", "notanumber"],
    ["heap", "-p", "1", "--diff", "0"],
    ["heap", "-p", "1", "--diff", "abc"],
    ["heap", "-p", "1", "--top", "-3"],
    ["heap", "-p", "1", "--max-copy", "0"],
    ["heap", "-p", "1", "--bogus"],
    ["heap", "-p", "1", "extra"],
], ids=lambda a: " ".join(a))
def test_heap_usage(args):
    run_pyrometer(args).expect(1)


def test_heap_help():
    res = run_pyrometer(["heap", "--help"]).expect(0)
    assert "--diff SECONDS" in res.stdout and "--json" in res.stdout, res.describe()
    res = run_pyrometer(["--help"]).expect(0)
    assert "heap" in res.stdout, res.describe()


def test_heap_no_such_pid():
    run_pyrometer(["heap", "-p", reaped_pid()]).expect(2)


def test_heap_not_python(sleep_process):  # noqa: F811
    res = run_pyrometer(["heap", "-p", sleep_process.pid]).expect(3)
    assert "not a Python process" in res.stderr, res.describe()
    assert sleep_process.poll() is None


def test_heap_unsupported_version(fake_python315):  # noqa: F811
    proc = subprocess.Popen([fake_python315], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        readable, _, _ = select.select([proc.stdout.fileno()], [], [], 10)
        assert readable and proc.stdout.readline() == b"ready\n"
        res = run_pyrometer(["heap", "-p", proc.pid]).expect(3)
        assert "3.15" in res.stderr, res.describe()
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_heap_permission_denied(python, spawn, binary_for_nobody):  # noqa: F811
    target = spawn(python, "heap_growth.py", WIDGETS)
    res = run_pyrometer(["heap", "-p", target.pid], prefix=NOBODY,
                        binary=binary_for_nobody).expect(4)
    assert "CAP_SYS_PTRACE" in res.stderr, res.describe()
