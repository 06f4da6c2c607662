"""
test_dump.py — `pyrometer dump` against parked and running targets, text and --json.

Every expected frame comes from the target: line numbers from `# LINE:tag`
markers in its source, or (multiline.py) from the interpreter's own f_lineno
captured by the target before it parked; thread ids from its ready line.
Names follow the version: co_qualname on 3.11+, co_name before.
The unicode target cannot run on 2.7 (non-ASCII identifiers are 3.x only).
"""

import os
import unicodedata

import pytest

from conftest import (Frame, dump_json, json_frames, marker_lines, parse_dump_text,
                      run_pyrometer, target_path)

UNICODE_TARGET = unicodedata.normalize("NFC", "ünïcödé_目标.py")


def skip_without_unicode_identifiers(python):
    if not python.unicode_identifiers:
        pytest.skip("CPython %d.%d has no non-ASCII identifiers (PEP 3131 is 3.0+): "
                    "%s's `def fünctiön_λ` is a SyntaxError there" % (python.version[0], python.version[1],
                                                                       UNICODE_TARGET))


def sleeper_frames(python):
    lines = marker_lines(target_path("sleeper.py"))
    return [
        Frame(python.name("Parker.park.<locals>.inner"), "sleeper.py", lines["inner_sleep"]),
        Frame(python.name("Parker.park"), "sleeper.py", lines["park_calls_inner"]),
        Frame("main", "sleeper.py", lines["main_calls_park"]),
        Frame("<module>", "sleeper.py", lines["module_calls_main"]),
    ]


def test_dump_sleeping_text(python, spawn):
    target = spawn(python, "sleeper.py", threads=1)
    res = run_pyrometer(["dump", "-p", target.pid]).expect(0)
    dump = parse_dump_text(res.stdout)

    assert dump["pid"] == target.pid
    assert "sleeper.py" in dump["command"], dump["command"]
    assert dump["version"] == target.info["version"], res.stdout
    assert os.path.isfile(dump["python_path"]), "Python path %r is not a file" % dump["python_path"]

    assert len(dump["threads"]) == 1, res.stdout
    thread = dump["threads"][0]
    assert thread["tid"] == target.info["main"]["native_id"], res.stdout
    assert thread["active"] is False, "a thread in time.sleep must be idle:\n" + res.stdout
    assert thread["gil"] is False, "a thread in time.sleep does not hold the GIL:\n" + res.stdout
    assert thread["name"] in (None, "", "MainThread"), res.stdout
    assert thread["frames"] == sleeper_frames(python), res.stdout


def test_dump_sleeping_json(python, spawn):
    target = spawn(python, "sleeper.py", threads=1)
    threads = dump_json(target.pid)

    assert len(threads) == 1, threads
    thread = threads[0]
    assert thread["os_thread_id"] == target.info["main"]["native_id"], thread
    assert thread["thread_id"] == target.info["main"]["ident"], thread
    assert thread["active"] is False, thread
    assert thread["owns_gil"] is False, thread
    assert thread["thread_name"] in (None, "", "MainThread"), thread
    assert json_frames(thread) == sleeper_frames(python), thread["frames"]
    for frame in thread["frames"]:
        assert frame["filename"] == target_path("sleeper.py"), frame


def test_dump_running_json(python, spawn):
    """A CPU-bound single thread is active and holds the GIL."""
    target = spawn(python, "cpu_busy.py")
    lines = marker_lines(target_path("cpu_busy.py"))
    threads = dump_json(target.pid)

    assert len(threads) == 1, threads
    thread = threads[0]
    assert thread["os_thread_id"] == target.pid, thread
    assert thread["active"] is True, thread
    assert thread["owns_gil"] is True, thread
    frames = json_frames(thread)
    assert frames[-1] == Frame("<module>", "cpu_busy.py", lines["module_calls_main"]), frames
    assert frames[-2].name == "main" and frames[-2].file == "cpu_busy.py", frames
    assert len(frames) in (2, 3), frames
    if len(frames) == 3:
        assert frames[0].name in ("busy", "other"), frames
        assert frames[1].line == lines["main_calls_" + frames[0].name], frames


def threads10_expectations(python, info):
    """{native_id: (name, expected frames innermost-first without the threading.py tail)}."""
    lines = marker_lines(target_path("threads10.py"))
    cond_wait = python.name("Condition.wait")
    event_wait = python.name("Event.wait")
    expected = {}
    for w in info["workers"]:
        expected[w["native_id"]] = (w, [cond_wait, event_wait],
                                    Frame("parked_worker", "threads10.py", lines["worker_wait"]))
    main = info["main"]
    expected[main["native_id"]] = (main, [cond_wait, event_wait],
                                   Frame("main", "threads10.py", lines["main_wait"]))
    return expected, lines


def test_dump_ten_threads_json(python, spawn):
    target = spawn(python, "threads10.py", threads=11)
    expected, lines = threads10_expectations(python, target.info)
    threads = dump_json(target.pid)

    assert len(threads) == 11, [t["os_thread_id"] for t in threads]
    assert sorted(t["os_thread_id"] for t in threads) == sorted(expected), threads
    for thread in threads:
        who, waits, own = expected[thread["os_thread_id"]]
        frames = json_frames(thread)
        assert thread["thread_id"] == who["ident"], thread
        assert thread["active"] is False, thread
        assert thread["owns_gil"] is False, thread
        if thread["thread_name"]:
            assert thread["thread_name"] == who["name"], thread
        assert [f.name for f in frames[:2]] == waits, frames
        assert all(f.file == "threading.py" for f in frames[:2]), frames
        assert frames[2] == own, frames
        if own.name == "main":
            assert frames[3:] == [Frame("<module>", "threads10.py", lines["module_calls_main"])], frames
        else:
            assert frames[-1].name == python.name("Thread._bootstrap"), frames
            assert all(f.file == "threading.py" for f in frames[3:]), frames


def test_dump_ten_threads_text(python, spawn):
    target = spawn(python, "threads10.py", threads=11)
    expected, _ = threads10_expectations(python, target.info)
    res = run_pyrometer(["dump", "-p", target.pid]).expect(0)
    dump = parse_dump_text(res.stdout)

    assert sorted(t["tid"] for t in dump["threads"]) == sorted(expected), res.stdout
    for thread in dump["threads"]:
        who, waits, own = expected[thread["tid"]]
        assert thread["active"] is False, res.stdout
        if thread["name"]:
            assert thread["name"] == who["name"], res.stdout
        assert [f.name for f in thread["frames"][:2]] == waits, res.stdout
        assert thread["frames"][2] == own, res.stdout


def multiline_expectations(info):
    park_line = marker_lines(target_path("multiline.py"))["park_sleep"]
    expected = {}
    for tag, report in info["threads"].items():
        frames = [Frame("park", "multiline.py", park_line)]
        frames += [Frame(name, short, line) for name, short, line in report["stack"]]
        expected[report["native_id"]] = (tag, frames)
    assert len(expected) == 3, info
    return expected


def test_dump_multiline_lines(python, spawn):
    """Each frame's line is the one the interpreter itself reports (f_lineno)."""
    target = spawn(python, "multiline.py", threads=3)
    expected = multiline_expectations(target.info)

    threads = dump_json(target.pid)
    assert sorted(t["os_thread_id"] for t in threads) == sorted(expected), threads
    for thread in threads:
        tag, frames = expected[thread["os_thread_id"]]
        assert json_frames(thread) == frames, "thread %s" % tag

    res = run_pyrometer(["dump", "-p", target.pid]).expect(0)
    for thread in parse_dump_text(res.stdout)["threads"]:
        tag, frames = expected[thread["tid"]]
        assert thread["frames"] == frames, "thread %s:\n%s" % (tag, res.stdout)


def unicode_frames(python):
    lines = marker_lines(target_path(UNICODE_TARGET))
    return [
        Frame("fünctiön_λ", UNICODE_TARGET, lines["uni_sleep"]),
        Frame(python.name("Klässe.méthode"), UNICODE_TARGET, lines["method_calls"]),
        Frame("main", UNICODE_TARGET, lines["main_calls"]),
        Frame("<module>", UNICODE_TARGET, lines["module_calls_main"]),
    ]


def test_dump_unicode(python, spawn):
    skip_without_unicode_identifiers(python)
    target = spawn(python, UNICODE_TARGET, "park", threads=1)
    expected = unicode_frames(python)

    res = run_pyrometer(["dump", "-p", target.pid]).expect(0)
    dump = parse_dump_text(res.stdout)
    assert UNICODE_TARGET in dump["command"], dump["command"]
    assert len(dump["threads"]) == 1 and dump["threads"][0]["frames"] == expected, res.stdout

    threads = dump_json(target.pid)
    assert len(threads) == 1 and json_frames(threads[0]) == expected, threads
    assert threads[0]["frames"][0]["filename"] == target_path(UNICODE_TARGET), threads


def test_dump_text_control_characters(python, spawn):
    """A thread name and a file name with a newline and a terminal escape
    (tests/targets/control_names.py) come out on one line each, the
    control characters as spaces: nothing reaches the terminal raw."""
    target = spawn(python, "control_names.py", threads=1)
    res = run_pyrometer(["dump", "-p", target.pid]).expect(0)
    assert "\x1b" not in res.stdout, res.describe()
    lines = res.stdout.split("\n")
    if tuple(python.version[:2]) >= (3, 8):   # thread names are read on 3.8+
        assert any(line.endswith(': "main [31m thread"') for line in lines), res.stdout
    assert "    hidden_park (evil file [2J.py:4)" in lines, res.stdout
