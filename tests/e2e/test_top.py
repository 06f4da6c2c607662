"""
test_top.py — `pyrometer top`, the live full-screen view, driven in a real
terminal: a private tmux server per test (its own socket), a bash in a
200x50 pane, keys sent with send-keys, the screen read with capture-pane.

What must hold: against cpu_busy.py (busy() is the leaf in ~80% of samples)
the first row is busy after a couple of refreshes, on every interpreter;
keys change the sort column, line numbers, the percentage basis and show
help; q, Ctrl-C, SIGTERM and the target's exit all end top with exit code 0,
the alternate screen left and the tty modes as they were (compared with
`stty -g` taken before the run), and a summary line on the normal screen;
launch mode keeps the program's output off the screen, in a log it names.
When stdout is not a terminal top prints plain-text tables instead.

Every wait polls the screen (every 0.2 s) up to a deadline; none sleeps and
hopes. Key handling is tested on one interpreter, the main view on all.
"""

import itertools
import os
import re
import shlex
import signal
import subprocess
import time

import pytest

from conftest import PYROMETER, discover_interpreters, parse_label, run_pyrometer, target_path

CPU_BUSY = target_path("cpu_busy.py")
SCREEN_TIMEOUT = 20.0
ROW_RE = re.compile(r"^\s*(?P<own>\d+\.\d)%\s+(?P<total>\d+\.\d)%\s+(?P<own_time>[\d.]+)s\s+"
                    r"(?P<total_time>[\d.]+)s\s+(?P<label>\S.*?)\s*$")
ELAPSED_RE = re.compile(r"Elapsed: (\d+\.\d) s")
_sockets = itertools.count()


def one_python():
    """The newest interpreter available, for the tests that need only one."""
    found = [p.values[0] for p in discover_interpreters() if p.values and p.values[0] is not None]
    if not found:
        pytest.skip("no interpreter found (see conftest.discover_interpreters)")
    return max(found, key=lambda i: (i.id.startswith("3."), i.version))


class Pane:
    """A bash in a tmux pane on a private server: run commands, send keys, read the screen."""

    def __init__(self, width=200, height=50):
        self.socket = "pyrometer-test-top-%d-%d" % (os.getpid(), next(_sockets))
        self.tmux(["new-session", "-d", "-x", str(width), "-y", str(height), "-s", "top",
                   "PS1='$ ' exec bash --norc --noprofile"], config=True)

    def tmux(self, args, config=False):
        argv = ["tmux", "-L", self.socket] + (["-f", "/dev/null"] if config else []) + args
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10,
                              check=True).stdout.decode("utf-8", "replace")

    def run(self, command):
        """Type `command` into the shell; after it, print EXIT=status and whether stty -g changed."""
        line = ('S=$(stty -g); %s; echo "EXIT=$?"; '
                '[ "$(stty -g)" = "$S" ] && echo TTY=SAME || echo TTY=CHANGED') % command
        self.tmux(["send-keys", "-t", "top", "-l", line])
        self.tmux(["send-keys", "-t", "top", "Enter"])

    def keys(self, *keys):
        self.tmux(["send-keys", "-t", "top"] + list(keys))

    def screen(self):
        return self.tmux(["capture-pane", "-p", "-t", "top"])

    def alternate_on(self):
        return self.tmux(["display", "-p", "-t", "top", "#{alternate_on}"]).strip() == "1"

    def shell_pid(self):
        return int(self.tmux(["display", "-p", "-t", "top", "#{pane_pid}"]).strip())

    def stable_screen(self):
        """The screen, captured twice 50 ms apart until both agree: never a half-drawn one."""
        text = self.screen()
        for _ in range(20):
            time.sleep(0.05)
            again = self.screen()
            if again == text:
                return text
            text = again
        return text

    def wait(self, predicate, what, timeout=SCREEN_TIMEOUT):
        """Poll the screen every 0.2 s until predicate(screen) is truthy; return its value.
        predicate sees only whole screens (stable_screen)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.stable_screen()
            value = predicate(text)
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail("timed out after %ss waiting for %s; screen:\n%s" % (timeout, what, text))
            time.sleep(0.2)

    def wait_exit(self, timeout=SCREEN_TIMEOUT):
        """Wait for top to end; return the screen. Checks exit code 0 and a restored terminal."""
        text = self.wait(lambda s: s if re.search(r"^TTY=(SAME|CHANGED)$", s, re.M) else None,
                         "top to exit", timeout)
        assert re.search(r"^EXIT=0$", text, re.M), "top did not exit with 0:\n" + text
        assert re.search(r"^TTY=SAME$", text, re.M), "tty modes not restored:\n" + text
        assert not self.alternate_on(), "still on the alternate screen:\n" + text
        assert re.search(r"^pyrometer: top watched pid \d+ \(Python [\d.]+\) for [\d.]+ s: "
                         r"\d+ samples", text, re.M), "no summary line:\n" + text
        return text

    def close(self):
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=10)


@pytest.fixture
def pane():
    p = Pane()
    yield p
    p.close()


def top_command(*args):
    return " ".join(shlex.quote(str(a)) for a in [PYROMETER, "top"] + list(args))


# ----------------------------------------------------------------------------
# Reading the screen


def table(text):
    """(header line, rows) of the table on screen: rows as dicts with a parsed Frame."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "%Own" in line and "%Total" in line and "Function (" in line:
            rows = []
            for row in lines[i + 1:]:
                m = ROW_RE.match(row)
                if not m:
                    break
                d = m.groupdict()
                d["frame"] = parse_label(d["label"])
                rows.append(d)
            return line, rows
    return None, []


def rows_if(condition, text):
    """(header, rows) when condition holds and the screen has table rows, else None."""
    header, rows = table(text)
    return (header, rows) if condition and rows else None


def elapsed(text):
    m = ELAPSED_RE.search(text)
    return float(m.group(1)) if m else 0.0


def refreshed(text, seconds):
    """The screen after `seconds` of sampling, with a table: (header, rows)."""
    header, rows = table(text)
    if elapsed(text) >= seconds and rows:
        return header, rows
    return None


def sorted_by(text):
    m = re.search(r"Sorted by (\S+)", text)
    return m.group(1) if m else None


def top_pid(pane):
    """pyrometer's pid: the pane's shell's child."""
    def child():
        try:
            with open("/proc/%d/task/%d/children" % (pane.shell_pid(), pane.shell_pid())) as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            return None
        return kids[0] if len(kids) == 1 else None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pid = child()
        if pid:
            return pid
        time.sleep(0.05)
    pytest.fail("cannot find pyrometer's pid under the pane's shell")


# ----------------------------------------------------------------------------
# The view, on every interpreter


def test_top_busy_is_hottest(python, spawn, pane):
    target = spawn(python, "cpu_busy.py")
    pane.run(top_command("-p", target.pid))
    text, (header, rows) = pane.wait(lambda s: (s, refreshed(s, 2.0)) if refreshed(s, 2.0) else None,
                                     "two refreshes with a table")
    assert "pid %d" % target.pid in text and "Python %d.%d" % python.version[:2] in text, text
    first = rows[0]["frame"]
    assert first.name == "busy" and first.file == "cpu_busy.py" and first.line is not None, text
    own = {}
    for r in rows:   # a function may have rows for several lines
        own[r["frame"].name] = own.get(r["frame"].name, 0.0) + float(r["own"])
    assert own.get("busy", 0) >= 50 and own.get("other", 0) >= 5, text
    # main() is on every stack (within torn samples): its %Total is about 100
    main_total = sum(float(r["total"]) for r in rows if r["frame"].name == "main")
    assert main_total >= 90, text
    assert re.search(r"GIL: \d+\.\d%", text) and re.search(r"Active: \d+\.\d%", text), text
    assert re.search(r"Threads: 1 ", text), text
    pane.keys("q")
    pane.wait_exit()
    assert target.proc.poll() is None, "attached target must keep running after top quits"


# ----------------------------------------------------------------------------
# Keys, on one interpreter


def test_top_keys(spawn, pane):
    python = one_python()
    target = spawn(python, "cpu_busy.py")
    pane.run(top_command("-p", target.pid))
    text, (header, rows) = pane.wait(lambda s: (s, refreshed(s, 1.0)) if refreshed(s, 1.0) else None,
                                     "a first table")
    assert sorted_by(text) == "%Own" and rows[0]["frame"].name == "busy", text
    assert "Function (file:line)" in header

    # l: line numbers off -> labels `busy (cpu_busy.py)`, one row per function
    pane.keys("l")
    _, rows = pane.wait(lambda s: rows_if("Lines: off" in s, s), "line numbers off")
    assert all(r["frame"].line is None for r in rows), rows
    names = [(r["frame"].name, r["frame"].file) for r in rows]
    assert len(names) == len(set(names)), "functions repeated without lines: %r" % names
    # ... and back on
    pane.keys("l")
    _, rows = pane.wait(lambda s: rows_if("Lines: on" in s, s), "line numbers on")
    assert all(r["frame"].line is not None for r in rows), rows

    # 2: sort by %Total -> the marker moves and <module> (on every stack) leads
    pane.keys("2")
    _, rows = pane.wait(lambda s: rows_if(sorted_by(s) == "%Total", s), "sort by %Total")
    assert rows[0]["frame"].name == "<module>", rows[:3]
    totals = [float(r["total"]) for r in rows]
    assert totals == sorted(totals, reverse=True), totals
    # F4 / < / > move between columns
    pane.keys("F4")
    pane.wait(lambda s: sorted_by(s) == "TotalTime", "sort by TotalTime (F4)")
    pane.keys("<")
    pane.wait(lambda s: sorted_by(s) == "OwnTime", "sort by OwnTime (<)")
    pane.keys(">", ">")
    pane.wait(lambda s: sorted_by(s) == "%Own", "sort by %Own (> wraps)")
    pane.keys("1")
    _, rows = pane.wait(lambda s: rows_if(sorted_by(s) == "%Own", s), "sort by %Own")
    assert rows[0]["frame"].name == "busy", rows[:3]

    # w: percentages over the last second
    pane.keys("w")
    pane.wait(lambda s: "Percentages: last" in s, "window percentages")
    pane.keys("w")
    pane.wait(lambda s: "Percentages: since start" in s, "percentages since start")

    # r: reset -> the elapsed time starts again
    before = elapsed(pane.stable_screen())
    pane.keys("r")
    pane.wait(lambda s: elapsed(s) < before and "Samples:" in s, "counts reset")

    # ?: help, any key closes it
    pane.keys("?")
    pane.wait(lambda s: "any key closes it" in s and table(s)[0] is None, "the help screen")
    pane.keys("x")
    pane.wait(lambda s: rows_if(True, s), "the table after help")

    pane.keys("q")
    pane.wait_exit()


@pytest.mark.parametrize("how", ["q", "C-c", "SIGTERM"])
def test_top_quits_cleanly(how, spawn, pane):
    target = spawn(one_python(), "cpu_busy.py")
    pane.run(top_command("-p", target.pid))
    pane.wait(lambda s: refreshed(s, 1.0), "a first table")
    assert pane.alternate_on()
    if how == "SIGTERM":
        os.kill(top_pid(pane), signal.SIGTERM)
    else:
        pane.keys(how)
    pane.wait_exit()
    assert target.proc.poll() is None, "attached target must keep running after top quits"


def test_top_target_exits(spawn, pane):
    target = spawn(one_python(), "cpu_busy.py")
    pane.run(top_command("-p", target.pid))
    pane.wait(lambda s: refreshed(s, 1.0), "a first table")
    target.proc.kill()
    text = pane.wait_exit()
    assert "pyrometer: process %d exited" % target.pid in text, text
    # the final table is printed on the normal screen
    assert "pyrometer: hottest functions:" in text, text
    _, rows = table(text)
    assert rows and rows[0]["frame"].name == "busy", text


def test_top_launch(pane, tmp_path):
    python = one_python()
    pane.run("TMPDIR=%s %s" % (shlex.quote(str(tmp_path)),
                               top_command("--", python.path, CPU_BUSY)))
    text, (_, rows) = pane.wait(lambda s: (s, refreshed(s, 2.0)) if refreshed(s, 2.0) else None,
                                "two refreshes in launch mode")
    assert "ready" not in text, "the program's output reached the screen:\n" + text
    assert rows[0]["frame"].name == "busy", text
    pane.keys("q")
    text = pane.wait_exit()
    assert re.search(r"^pyrometer: the program (exited with status \d+|was killed by signal)",
                     text, re.M), text
    m = re.search(r"^pyrometer: the program's output is in (\S+)$", text, re.M)
    assert m, text
    log = m.group(1)
    assert os.path.dirname(log) == str(tmp_path), log
    with open(log, encoding="utf-8", errors="replace") as f:
        assert f.read().startswith("ready "), "the program's output is not in %s" % log


@pytest.mark.parametrize("locale,expected", [
    ("C.UTF-8", "fünctiön_λ (ünïcödé_目标.py:"),
    ("C", "f?ncti?n_? (?n?c?d?_??.py:"),   # one '?' per character that cannot be shown
])
def test_top_unicode_names(locale, expected, pane):
    python = one_python()
    pane.run("LC_ALL=%s %s" % (locale, top_command("--", python.path,
                                                    target_path("ünïcödé_目标.py"), "burn")))
    text = pane.wait(lambda s: s if refreshed(s, 1.0) and expected in s else None,
                     "the hot function labelled %r" % expected)
    row = [line for line in text.splitlines() if expected in line][0]
    assert ROW_RE.match(row), row
    pane.keys("q")
    pane.wait_exit()


# ----------------------------------------------------------------------------
# Without a terminal, and errors


def test_top_plain_text_when_not_a_tty(tmp_path):
    python = one_python()
    env_tmp = str(tmp_path)
    res = run_pyrometer(["top", "--", python.path, CPU_BUSY, "--seconds", "2.5"],
                        prefix=["env", "TMPDIR=" + env_tmp])
    assert res.returncode == 0, res.describe()
    tables = res.stdout.split("\n\n")
    assert len([t for t in tables if t.strip()]) >= 2, res.describe()
    last = [t for t in tables if t.strip()][-1]
    _, rows = table(last)
    assert rows and rows[0]["frame"].name == "busy", res.describe()
    assert "the program exited with status 0" in res.stderr, res.describe()
    assert "\x1b" not in res.stdout, "escape sequences in plain-text output"


@pytest.mark.parametrize("args", [
    ["top"],
    ["top", "-p"],
    ["top", "-p", "abc"],
    ["top", "-r", "0", "-p", "1"],
    ["top", "--bogus", "-p", "1"],
    ["top", "-p", "1", "--", "python3"],
])
def test_top_bad_usage(args):
    run_pyrometer(args).expect(1)


def test_top_help():
    res = run_pyrometer(["top", "--help"]).expect(0)
    assert "usage: pyrometer top" in res.stdout and "not a terminal" in res.stdout, res.stdout


def test_top_no_such_pid():
    proc = subprocess.Popen(["true"])
    proc.wait(timeout=10)
    run_pyrometer(["top", "-p", proc.pid]).expect(2)
