"""
conftest.py — shared machinery for pyrometer's end-to-end tests.

Owns: finding the interpreters every test runs against, launching target
scripts from tests/targets/ and waiting (with a bound) for their "ready" line,
running build/pyrometer with a timeout, and parsing what it prints (collapsed
stacks, frame labels, dump text). Never sleeps and hopes: every wait is on a
condition the target or the OS defines, and every wait has a deadline.

Interpreters: each test that takes the `python` fixture runs once per
interpreter: pyenv's CPython 2.7 and 3.6 .. 3.13 (newest patch of each minor) and
Debian's /usr/bin/python3.11 (a static build, id "debian-3.11"). A missing
one is skipped with a message saying where it was looked for. Set
PYROMETER_TEST_PYTHONS=/path/a,/path/b to test exactly those instead.
"""

import glob
import json
import os
import re
import select
import shutil
import signal
import subprocess
import time

import pytest

REPO = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGETS = os.path.join(REPO, "tests", "targets")
PYROMETER = os.environ.get("PYROMETER_BIN", os.path.join(REPO, "build", "pyrometer"))

PYENV_VERSIONS = ((2, 7), (3, 6), (3, 7), (3, 8), (3, 9), (3, 10), (3, 11), (3, 12), (3, 13))
DEBIAN_PYTHON = "/usr/bin/python3.11"
ERROR_PREFIX = "pyrometer: error: "

READY_TIMEOUT = 20.0      # seconds a target may take to print its ready line
PYROMETER_TIMEOUT = 30.0  # seconds any pyrometer run may take before it counts as hung


# ----------------------------------------------------------------------------
# Interpreters


class Interpreter:
    """One CPython to run targets with: its path, (major, minor) and test id."""

    def __init__(self, ident, path, version):
        self.id = ident
        self.path = path
        self.version = version  # (major, minor, micro)

    # 2.7's threading names some methods with two underscores (private,
    # name-mangled in the class, but co_name keeps the name as written).
    PY2_NAMES = {"Thread._bootstrap": "__bootstrap",
                 "Thread._bootstrap_inner": "__bootstrap_inner"}

    @property
    def qualnames(self):
        """True when frames carry co_qualname (3.11+), e.g. `Worker.run`."""
        return self.version[:2] >= (3, 11)

    @property
    def unicode_identifiers(self):
        """False on Python 2, where `def fünctiön_λ` is a SyntaxError (PEP 3131)."""
        return self.version[0] >= 3

    def name(self, qualname):
        """The function name pyrometer must report for a code object whose
        qualified name is `qualname`: the qualname on 3.11+, else co_name."""
        if self.qualnames:
            return qualname
        if self.version[0] == 2 and qualname in self.PY2_NAMES:
            return self.PY2_NAMES[qualname]
        return qualname.rsplit(".", 1)[-1]

    def __repr__(self):
        return "Interpreter(%s, %s)" % (self.id, self.path)


def _query_version(path):
    out = subprocess.run(
        [path, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30, check=True,
    ).stdout.decode().strip()
    return tuple(int(x) for x in out.split("."))


def _pyenv_root():
    if os.environ.get("PYENV_ROOT"):
        return os.environ["PYENV_ROOT"]
    exe = shutil.which("pyenv")
    if exe:
        try:
            out = subprocess.run([exe, "root"], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, timeout=10).stdout.decode().strip()
            if out:
                return out
        except (OSError, subprocess.SubprocessError):
            pass
    return os.path.expanduser("~/.pyenv")


def _newest_pyenv(root, major, minor):
    """Path of the newest-patch pyenv CPython <major>.<minor>, or None; plus the glob used."""
    pattern = os.path.join(root, "versions", "%d.%d.*" % (major, minor), "bin",
                           "python%d.%d" % (major, minor))
    best = None
    for path in glob.glob(pattern):
        patch = path.split(os.sep)[-3].split(".")[2]
        if not patch.isdigit():  # 3.12.0a1, 3.13.0t etc.: not a plain release
            continue
        if os.access(path, os.X_OK) and (best is None or int(patch) > best[0]):
            best = (int(patch), path)
    return (best[1] if best else None), pattern


def discover_interpreters():
    """List of pytest.param(Interpreter|None, id=...), skipped ones marked so."""
    params = []
    override = os.environ.get("PYROMETER_TEST_PYTHONS", "").strip()
    if override:
        seen = {}
        for path in [p.strip() for p in override.split(",") if p.strip()]:
            if not os.access(path, os.X_OK):
                params.append(pytest.param(None, id=os.path.basename(path) or path, marks=pytest.mark.skip(
                    reason="interpreter %s from PYROMETER_TEST_PYTHONS not found or not executable" % path)))
                continue
            version = _query_version(path)
            ident = "%d.%d" % version[:2]
            if os.path.realpath(path) == os.path.realpath(DEBIAN_PYTHON):
                ident = "debian-" + ident
            seen[ident] = seen.get(ident, 0) + 1
            if seen[ident] > 1:
                ident += "-%d" % seen[ident]
            params.append(pytest.param(Interpreter(ident, path, version), id=ident))
        return params

    root = _pyenv_root()
    for major, minor in PYENV_VERSIONS:
        ident = "%d.%d" % (major, minor)
        path, pattern = _newest_pyenv(root, major, minor)
        if path is None:
            params.append(pytest.param(None, id=ident, marks=pytest.mark.skip(
                reason="CPython %s not installed: looked in %s" % (ident, pattern))))
            continue
        params.append(pytest.param(Interpreter(ident, path, _query_version(path)), id=ident))
    if os.access(DEBIAN_PYTHON, os.X_OK):
        params.append(pytest.param(Interpreter("debian-3.11", DEBIAN_PYTHON, _query_version(DEBIAN_PYTHON)),
                                   id="debian-3.11"))
    else:
        params.append(pytest.param(None, id="debian-3.11", marks=pytest.mark.skip(
            reason="Debian CPython 3.11 not installed: looked for %s" % DEBIAN_PYTHON)))
    return params


_INTERPRETERS = None


def pytest_generate_tests(metafunc):
    global _INTERPRETERS
    if "python" in metafunc.fixturenames:
        if _INTERPRETERS is None:
            _INTERPRETERS = discover_interpreters()
        metafunc.parametrize("python", _INTERPRETERS)


# ----------------------------------------------------------------------------
# The binary


@pytest.fixture(scope="session")
def pyrometer_bin():
    if not os.access(PYROMETER, os.X_OK):
        pytest.fail("pyrometer binary not built: %s does not exist (run `make`)" % PYROMETER)
    return PYROMETER


class Result:
    """What one pyrometer run did: exit code, stdout and stderr as text."""

    def __init__(self, argv, returncode, stdout, stderr):
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    def describe(self):
        return "command: %s\nexit code: %s\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(self.argv), self.returncode, self.stdout[-4000:], self.stderr[-4000:])

    def expect(self, code):
        """Assert the exit code, and that a failure is one 'pyrometer: error:' line."""
        assert self.returncode == code, "expected exit code %d\n%s" % (code, self.describe())
        if code != 0:
            assert_one_error_line(self)
        return self


def assert_one_error_line(result):
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), (
        "an error must be exactly one stderr line starting with %r\n%s" % (ERROR_PREFIX, result.describe()))


def _decode(data):
    # Strict UTF-8: pyrometer must print valid UTF-8 (unicode test relies on it).
    return data.decode("utf-8") if data is not None else ""


def _check_not_crashed(argv, proc_returncode, out, err):
    assert proc_returncode is not None and proc_returncode >= 0, (
        "pyrometer was killed by signal %s\ncommand: %s\nstdout:\n%s\nstderr:\n%s"
        % (-proc_returncode if proc_returncode else "?", " ".join(argv),
           out[-4000:], err[-4000:]))


def run_pyrometer(args, timeout=PYROMETER_TIMEOUT, input=None, prefix=None, binary=None):
    """Run pyrometer with args; fail the test if it hangs past timeout or dies by a signal.

    prefix: argv words before the binary (e.g. setpriv ...); binary: another copy of it."""
    if not os.access(PYROMETER, os.X_OK):
        pytest.fail("pyrometer binary not built: %s does not exist (run `make`)" % PYROMETER)
    argv = list(prefix or []) + [binary or PYROMETER] + [str(a) for a in args]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
                            start_new_session=True)
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        pytest.fail("pyrometer hung for more than %ss\ncommand: %s\nstderr:\n%s"
                    % (timeout, " ".join(argv), _decode(err)[-4000:]))
    out, err = _decode(out), _decode(err)
    _check_not_crashed(argv, proc.returncode, out, err)
    return Result(argv, proc.returncode, out, err)


class Background:
    """A pyrometer run left going (to be interrupted or to outlive its target)."""

    def __init__(self, args, prefix=None):
        self.argv = list(prefix or []) + [PYROMETER] + [str(a) for a in args]
        if not os.access(PYROMETER, os.X_OK):
            pytest.fail("pyrometer binary not built: %s does not exist (run `make`)" % PYROMETER)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=REPO, start_new_session=True)

    @property
    def pid(self):
        return self.proc.pid

    def finish(self, timeout=PYROMETER_TIMEOUT):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(self.proc)
            out, err = self.proc.communicate()
            pytest.fail("pyrometer hung for more than %ss\ncommand: %s\nstderr:\n%s"
                        % (timeout, " ".join(self.argv), _decode(err)[-4000:]))
        out, err = _decode(out), _decode(err)
        _check_not_crashed(self.argv, self.proc.returncode, out, err)
        return Result(self.argv, self.proc.returncode, out, err)

    def kill(self):
        if self.proc.poll() is None:
            _kill_group(self.proc)
        try:
            self.proc.communicate(timeout=10)
        except (subprocess.TimeoutExpired, ValueError):
            pass


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except ProcessLookupError:
        pass


@pytest.fixture
def background():
    """Factory for Background runs; whatever is still running at teardown is killed."""
    runs = []

    def start(args, prefix=None):
        run = Background(args, prefix=prefix)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill()


def wait_for(condition, timeout, what):
    """Poll condition() until true; fail the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(0.01)


def signal_handled(pid, signum):
    """True once process pid catches signum (a handler: SigCgt) or has blocked it
    to take it synchronously (signalfd / sigwait: SigBlk), per /proc/PID/status."""
    bit = 1 << (signum - 1)
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(("SigCgt:", "SigBlk:")) and int(line.split()[1], 16) & bit:
                    return True
    except (FileNotFoundError, ProcessLookupError):
        return False
    return False


# ----------------------------------------------------------------------------
# Targets


def target_path(name):
    return os.path.join(TARGETS, name)


def marker_lines(path):
    """{tag: line} for every `# LINE:tag` comment in the file (1-based lines)."""
    lines = {}
    with open(path, encoding="utf-8") as f:
        for number, text in enumerate(f, 1):
            for tag in re.findall(r"#\s*LINE:([\w\-]+)", text):
                assert tag not in lines, "marker %s twice in %s" % (tag, path)
                lines[tag] = number
    return lines


class Target:
    """A running target script. `info` is the JSON it printed on its ready line."""

    def __init__(self, argv, stderr_path):
        self.argv = argv
        self.stderr_path = stderr_path
        self.stderr_file = open(stderr_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.stderr_file, cwd=REPO)
        self.info = None
        self._buf = b""

    @property
    def pid(self):
        return self.proc.pid

    def stderr_text(self):
        self.stderr_file.flush()
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")[-4000:]

    def wait_ready(self, timeout=READY_TIMEOUT):
        """Read stdout until a line `ready [JSON]`; return the JSON (or {})."""
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf or not self._ready_line():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail("target %s not ready after %ss\nstdout so far: %r\nstderr:\n%s"
                            % (" ".join(self.argv), timeout, self._buf, self.stderr_text()))
            readable, _, _ = select.select([fd], [], [], min(remaining, 0.5))
            if readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    self.proc.wait(timeout=10)
                    pytest.fail("target %s exited (status %s) before ready\nstdout: %r\nstderr:\n%s"
                                % (" ".join(self.argv), self.proc.returncode, self._buf,
                                   self.stderr_text()))
                self._buf += chunk
        line = self._ready_line()
        rest = line[len(b"ready"):].strip()
        self.info = json.loads(rest.decode("utf-8")) if rest else {}
        return self.info

    def _ready_line(self):
        for line in self._buf.split(b"\n")[:-1]:
            if line == b"ready" or line.startswith(b"ready "):
                return line
        return None

    def task_count(self):
        try:
            return len(os.listdir("/proc/%d/task" % self.pid))
        except FileNotFoundError:
            return -1

    def wait_threads(self, count, timeout=10.0):
        """Wait until the process has exactly `count` OS threads (helper threads gone)."""
        wait_for(lambda: self.task_count() == count, timeout,
                 "target %d to have exactly %d threads (has %d)" % (self.pid, count, self.task_count()))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdout, self.stderr_file):
            try:
                f.close()
            except Exception:
                pass


@pytest.fixture
def spawn(tmp_path):
    """spawn(python, "script.py", *args, ready=True) -> Target, killed at teardown."""
    targets = []

    def start(python, script, *args, ready=True, threads=None):
        path = python.path if isinstance(python, Interpreter) else python
        argv = [path, target_path(script)] + [str(a) for a in args]
        target = Target(argv, str(tmp_path / ("target-%d.stderr" % len(targets))))
        targets.append(target)
        if ready:
            target.wait_ready()
        if threads is not None:
            target.wait_threads(threads)
        return target

    yield start
    for target in targets:
        target.stop()


# ----------------------------------------------------------------------------
# Parsing pyrometer's outputs

LABEL_RE = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


class Frame:
    def __init__(self, name, file, line):
        self.name = name
        self.file = file
        self.line = line

    def __eq__(self, other):
        return (self.name, self.file, self.line) == (other.name, other.file, other.line)

    def __repr__(self):
        if self.line is None:
            return "%s (%s)" % (self.name, self.file)
        return "%s (%s:%d)" % (self.name, self.file, self.line)


def parse_label(label):
    """`function (file:line)` or `function (file)` -> Frame; fails the test otherwise."""
    m = LABEL_RE.match(label)
    assert m, "frame label %r is not `function (file:line)`" % label
    line = m.group("line")
    return Frame(m.group("name"), m.group("file"), int(line) if line is not None else None)


def parse_collapsed(text):
    """Collapsed stacks -> list of (frames root-first, count). Every line must parse."""
    stacks = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        stack, sep, count = raw.rpartition(" ")
        assert sep and count.isdigit() and stack, "bad collapsed line %r" % raw
        frames = [parse_label(label) for label in stack.split(";")]
        stacks.append((frames, int(count)))
    return stacks


def read_collapsed(path):
    assert os.path.isfile(path), "profile %s was not written" % path
    with open(path, "rb") as f:
        return parse_collapsed(f.read().decode("utf-8"))


def total_samples(stacks):
    return sum(count for _, count in stacks)


def leaf_shares(stacks):
    """{leaf function name: share of samples}."""
    total = total_samples(stacks)
    shares = {}
    for frames, count in stacks:
        shares[frames[-1].name] = shares.get(frames[-1].name, 0) + count
    return {name: n / total for name, n in shares.items()} if total else {}


DUMP_THREAD_RE = re.compile(
    r'^Thread (?P<tid>\d+) \((?P<state>active|idle)\)(?P<gil> \+GIL)?(?::(?: "(?P<name>.*)")?)?$')


def parse_dump_text(text):
    """dump's text output -> dict(pid, command, version, python_path, threads=[...]).

    Each thread: dict(tid, active, gil, name, frames=[Frame innermost first]).
    """
    lines = text.splitlines()
    assert len(lines) >= 2, "dump output too short:\n%s" % text
    m = re.match(r"^Process (\d+): (.*)$", lines[0])
    assert m, "first dump line %r is not `Process PID: COMMAND`" % lines[0]
    result = {"pid": int(m.group(1)), "command": m.group(2)}
    m = re.match(r"^Python v(\d+\.\d+\.\d+\S*) \((.*)\)$", lines[1])
    assert m, "second dump line %r is not `Python vX.Y.Z (PATH)`" % lines[1]
    result["version"], result["python_path"] = m.group(1), m.group(2)
    threads = []
    for line in lines[2:]:
        if not line.strip():
            continue
        if line.startswith("    "):
            assert threads, "frame line %r before any Thread line" % line
            threads[-1]["frames"].append(parse_label(line[4:]))
            continue
        m = DUMP_THREAD_RE.match(line)
        assert m, "dump line %r is neither a Thread line nor a 4-space frame" % line
        threads.append({"tid": int(m.group("tid")), "active": m.group("state") == "active",
                        "gil": bool(m.group("gil")), "name": m.group("name"), "frames": []})
    result["threads"] = threads
    return result


def dump_json(pid):
    """Run `dump --json -p pid`; return the parsed array (after checking its shape)."""
    res = run_pyrometer(["dump", "--json", "-p", pid]).expect(0)
    try:
        threads = json.loads(res.stdout)
    except ValueError as e:
        pytest.fail("dump --json printed invalid JSON (%s)\n%s" % (e, res.describe()))
    assert isinstance(threads, list), "dump --json must print an array\n" + res.describe()
    for t in threads:
        for key in ("pid", "thread_id", "os_thread_id", "thread_name", "active", "owns_gil", "frames"):
            assert key in t, "thread object lacks %r: %r" % (key, t)
        assert t["pid"] == pid, t
        assert isinstance(t["active"], bool) and isinstance(t["owns_gil"], bool), t
        assert t["thread_name"] is None or isinstance(t["thread_name"], str), t
        for fr in t["frames"]:
            for key in ("name", "filename", "short_filename", "line"):
                assert key in fr, "frame object lacks %r: %r" % (key, fr)
    return threads


def json_frames(thread):
    """A dump --json thread's frames as Frame(name, short_filename, line), innermost first."""
    return [Frame(f["name"], f["short_filename"], f["line"]) for f in thread["frames"]]


def load_speedscope(path):
    """Parse and shape-check a speedscope file; return (frames, profiles)."""
    assert os.path.isfile(path), "profile %s was not written" % path
    with open(path, "rb") as f:
        doc = json.loads(f.read().decode("utf-8"))
    assert doc.get("$schema") == "https://www.speedscope.app/file-format-schema.json", doc.get("$schema")
    frames = doc["shared"]["frames"]
    for fr in frames:
        assert isinstance(fr.get("name"), str), fr
    profiles = doc["profiles"]
    for p in profiles:
        assert p["type"] == "sampled", p.get("type")
        for key in ("name", "unit", "startValue", "endValue", "samples", "weights"):
            assert key in p, "speedscope profile lacks %r" % key
        assert len(p["samples"]) == len(p["weights"]), "samples and weights differ in length"
        for stack in p["samples"]:
            for index in stack:
                assert isinstance(index, int) and 0 <= index < len(frames), "bad frame index %r" % index
    return frames, profiles


def speedscope_stacks(frames, profile):
    """A speedscope profile's samples as (list of frame names root-first, weight)."""
    return [([frames[i]["name"] for i in stack], w) for stack, w in zip(profile["samples"], profile["weights"])]


def speedscope_function(frame_name):
    """The function part of a speedscope frame name (which may be a full label)."""
    m = LABEL_RE.match(frame_name)
    return m.group("name") if m else frame_name
