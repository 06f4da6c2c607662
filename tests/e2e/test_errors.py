"""
test_errors.py — exit codes and error messages (VISION.md: 0 ok, 1 usage,
2 no such process / gone, 3 not Python or unsupported, 4 permission, 5 output),
and the edges of a recording: the target exiting mid-way, Ctrl-C, launch mode
passing stdio through and reporting the child's status.

Every failing run must print exactly one stderr line starting with
"pyrometer: error: " and must never die by a signal or hang (conftest checks).
"""

import os
import shutil
import signal
import subprocess
import tempfile

import pytest

from conftest import (assert_one_error_line, read_collapsed, run_pyrometer, signal_handled,
                      target_path, total_samples, wait_for, PYROMETER)


def reaped_pid():
    """A PID that just belonged to a process that is now gone and reaped."""
    proc = subprocess.Popen(["true"])
    proc.wait(timeout=10)
    assert not os.path.exists("/proc/%d" % proc.pid)
    return proc.pid


# ----------------------------------------------------------------------------
# Usage


@pytest.mark.parametrize("args", [
    [],
    ["frobnicate"],
    ["record"],
    ["dump"],
    ["record", "--bogus", "-p", "1"],
    ["dump", "--bogus", "-p", "1"],
    ["record", "-r", "abc", "-p", "1"],
    ["record", "-r", "0", "-p", "1"],
    ["record", "-d", "abc", "-p", "1"],
    ["record", "-f", "nosuchformat", "-p", "1"],
    ["dump", "-p", "notanumber"],
    ["record", "-p"],
], ids=lambda a: " ".join(a) or "no-args")
def test_bad_usage(args):
    run_pyrometer(args).expect(1)


def test_version_and_help():
    res = run_pyrometer(["--version"]).expect(0)
    assert "pyrometer" in res.stdout, res.describe()
    res = run_pyrometer(["--help"]).expect(0)
    assert "record" in res.stdout and "dump" in res.stdout, res.describe()


# ----------------------------------------------------------------------------
# Not found / not Python / unsupported


@pytest.mark.parametrize("command", ["dump", "record"])
def test_no_such_pid(command, tmp_path):
    args = [command, "-p", reaped_pid()]
    if command == "record":
        args[1:1] = ["-d", 1, "-o", str(tmp_path / "out.svg")]
    run_pyrometer(args).expect(2)


@pytest.fixture
def sleep_process():
    proc = subprocess.Popen(["sleep", "60"])
    wait_for(lambda: os.path.exists("/proc/%d/exe" % proc.pid) and
             os.path.realpath("/proc/%d/exe" % proc.pid).endswith("sleep"), 10, "sleep to exec")
    yield proc
    proc.kill()
    proc.wait(timeout=10)


@pytest.mark.parametrize("command", ["dump", "record"])
def test_not_python(command, sleep_process, tmp_path):
    args = [command, "-p", sleep_process.pid]
    if command == "record":
        args[1:1] = ["-d", 1, "-o", str(tmp_path / "out.svg")]
    run_pyrometer(args).expect(3)
    assert sleep_process.poll() is None, "pyrometer must leave a non-Python target alone"


@pytest.fixture(scope="module")
def fake_python315(tmp_path_factory):
    """A C program named python3.15 exporting Py_Version = 3.15.0 and _PyRuntime."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler (gcc/cc) on PATH to build the fake python3.15")
    exe = str(tmp_path_factory.mktemp("fakepy") / "python3.15")
    subprocess.run([gcc, "-O0", "-rdynamic", "-DFAKE_PY_VERSION=0x030F00F0UL", "-o", exe,
                    target_path("fake_python.c")], check=True, timeout=120)
    syms = subprocess.run(["nm", "-D", "--defined-only", exe], stdout=subprocess.PIPE,
                          timeout=30).stdout.decode()
    assert "Py_Version" in syms and "_PyRuntime" in syms, "fake python lacks dynamic symbols:\n" + syms
    return exe


@pytest.mark.parametrize("command", ["dump", "record"])
def test_unsupported_version(command, fake_python315, tmp_path):
    proc = subprocess.Popen([fake_python315], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        line = _read_line(proc, 10)
        assert line == b"ready\n", line
        args = [command, "-p", proc.pid]
        if command == "record":
            args[1:1] = ["-d", 1, "-o", str(tmp_path / "out.svg")]
        res = run_pyrometer(args).expect(3)
        assert "3.15" in res.stderr, "the message must name the version:\n" + res.describe()
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _read_line(proc, timeout):
    import select
    fd = proc.stdout.fileno()
    readable, _, _ = select.select([fd], [], [], timeout)
    assert readable, "fake python did not print ready within %ss" % timeout
    return proc.stdout.readline()


# ----------------------------------------------------------------------------
# Permission


@pytest.fixture(scope="module")
def binary_for_nobody():
    """A copy of the binary that user nobody can execute, in a world-readable dir."""
    if os.geteuid() != 0:
        pytest.skip("permission test needs root (to run pyrometer as nobody against a root-owned "
                    "target); running as uid %d" % os.geteuid())
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) not installed: cannot drop to user nobody")
    if not os.access(PYROMETER, os.X_OK):
        pytest.fail("pyrometer binary not built: %s" % PYROMETER)
    tmp = tempfile.mkdtemp(prefix="pyrometer-nobody-")
    os.chmod(tmp, 0o777)
    exe = os.path.join(tmp, "pyrometer")
    shutil.copy2(PYROMETER, exe)
    os.chmod(exe, 0o755)
    yield exe
    shutil.rmtree(tmp, ignore_errors=True)


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


@pytest.mark.parametrize("command", ["dump", "record"])
def test_permission_denied(command, python, spawn, binary_for_nobody):
    target = spawn(python, "sleeper.py", threads=1)
    args = [command, "-p", target.pid]
    if command == "record":
        # nobody may write here (the binary's directory), so only the target is refused
        args[1:1] = ["-d", 1, "-o", os.path.join(os.path.dirname(binary_for_nobody), "out.svg")]
    res = run_pyrometer(args, prefix=NOBODY, binary=binary_for_nobody).expect(4)
    assert "CAP_SYS_PTRACE" in res.stderr, res.describe()


# ----------------------------------------------------------------------------
# Output


def test_failed_record_keeps_existing_file(tmp_path):
    """A record that fails (no such process) must not delete a file that was
    already at the output path: it is the user's, not pyrometer's."""
    out = tmp_path / "precious.txt"
    out.write_text("user data\n")
    run_pyrometer(["record", "-f", "raw", "-d", 1, "-o", str(out), "-p", reaped_pid()]).expect(2)
    assert out.exists(), "pyrometer deleted the pre-existing file %s after failing" % out


def test_unwritable_output(python, spawn):
    target = spawn(python, "sleeper.py", threads=1)
    res = run_pyrometer(["record", "-i", "-d", 1, "-o", "/proc/nonexistent/x.svg",
                         "-p", target.pid]).expect(5)
    assert "/proc/nonexistent/x.svg" in res.stderr, res.describe()


# ----------------------------------------------------------------------------
# The end of a recording


def test_target_exits_mid_recording(python, spawn, background, tmp_path):
    """-d 10 on a target that exits after ~1 s: profile written, exit 0."""
    target = spawn(python, "cpu_busy.py", "--seconds", 1)
    out = str(tmp_path / "gone.txt")
    rec = background(["record", "-f", "raw", "-d", 10, "-o", out, "-p", target.pid])
    target.proc.wait(timeout=30)  # reap it, as a parent would
    res = rec.finish().expect(0)
    stacks = read_collapsed(out)
    assert total_samples(stacks) > 0, "no samples from a target that ran ~1 s:\n" + res.describe()
    assert any(frames[-1].name == "busy" for frames, _ in stacks), stacks


def test_sigint_writes_profile(python, spawn, background, tmp_path):
    target = spawn(python, "cpu_busy.py")
    out = str(tmp_path / "int.txt")
    rec = background(["record", "-f", "raw", "-o", out, "-p", target.pid])
    wait_for(lambda: signal_handled(rec.pid, signal.SIGINT) or rec.proc.poll() is not None, 10,
             "pyrometer to install its SIGINT handler")
    assert rec.proc.poll() is None, "pyrometer ended before Ctrl-C:\n" + rec.finish().describe()
    os.kill(rec.pid, signal.SIGINT)
    res = rec.finish().expect(0)
    assert "samples" in res.stderr and out in res.stderr, res.describe()
    for frames, _ in read_collapsed(out):
        assert frames[0].name == "<module>" and frames[0].file == "cpu_busy.py", frames
    assert target.proc.poll() is None, "Ctrl-C to pyrometer must not reach the attached target"


def test_launch_passes_stdin_stdout(python, tmp_path):
    out = str(tmp_path / "echo.svg")
    res = run_pyrometer(["record", "-o", out, "--", python.path, "-c",
                         "import sys; print(sys.stdin.read().upper())"], input=b"hello\n").expect(0)
    assert "HELLO" in res.stdout, res.describe()
    assert os.path.isfile(out), "profile not written:\n" + res.describe()


def test_launch_reports_child_status(python, tmp_path):
    out = str(tmp_path / "exit3.txt")
    res = run_pyrometer(["record", "-f", "raw", "-o", out, "--", python.path,
                         target_path("cpu_busy.py"), "--seconds", 1, "--exit-code", 3]).expect(0)
    assert "exited with status 3" in res.stderr, res.describe()
    stacks = read_collapsed(out)
    assert any(frames[-1].name == "busy" for frames, _ in stacks), stacks


def test_launch_missing_program(tmp_path):
    """A command that cannot be executed is not a crash or a hang."""
    res = run_pyrometer(["record", "-o", str(tmp_path / "x.svg"), "--", "/nonexistent/python3"])
    assert res.returncode != 0, res.describe()
    assert_one_error_line(res)
