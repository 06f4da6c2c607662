"""
test_record.py — `pyrometer record` in attach and launch modes, in raw
(collapsed), speedscope and flamegraph formats, with and without -i.

Shares are asserted only where the target fixes them by iteration counts
(cpu_busy.py: busy 400k iterations, other 100k of the same loop body; rec20.py:
the work sits at the bottom of the recursion); line numbers come from the
targets' `# LINE:tag` markers or from f_lineno they captured themselves.
"""

import unicodedata
import xml.etree.ElementTree as ET

from conftest import (LABEL_RE, Frame, leaf_shares, load_speedscope, marker_lines, read_collapsed,
                      run_pyrometer, speedscope_function, speedscope_stacks, target_path,
                      total_samples)
from test_dump import multiline_expectations, skip_without_unicode_identifiers, UNICODE_TARGET

CPU_BUSY = target_path("cpu_busy.py")


def check_summary(res, out):
    """The stderr summary mentions samples, errors and where the profile went."""
    assert "samples" in res.stderr, res.describe()
    assert "errors" in res.stderr, res.describe()
    assert out in res.stderr, res.describe()


def check_cpu_busy_profile(stacks, lines, what, startup=False):
    """cpu_busy.py's collapsed stacks: shape, lines, and the 80/20 split.

    startup: launch mode, where samples also catch the interpreter starting up
    and the script importing (any stack not rooted at the script's main() call);
    those are set aside, and must be a small part of the whole."""
    root = Frame("<module>", "cpu_busy.py", lines["module_calls_main"])
    if startup:
        everything = total_samples(stacks)
        stacks = [(frames, n) for frames, n in stacks if frames[0] == root and len(frames) > 1]
        assert total_samples(stacks) >= 0.8 * everything, \
            "%s: only %d of %d samples in main()" % (what, total_samples(stacks), everything)
    total = total_samples(stacks)
    assert total >= 50, "%s: only %d samples" % (what, total)
    off_call_line = 0
    for frames, count in stacks:
        assert frames[0] == root, (what, frames)
        assert frames[1].name == "main" and frames[1].file == "cpu_busy.py", (what, frames)
        assert len(frames) <= 3, (what, frames)
        if len(frames) == 3:
            leaf = frames[2]
            assert leaf.name in ("busy", "other") and leaf.file == "cpu_busy.py", (what, frames)
            # main() is at the call of its callee, unless the sample was torn
            # (read from a running target without pausing it): rare.
            if frames[1].line != lines["main_calls_" + leaf.name]:
                off_call_line += count
    assert off_call_line / total <= 0.02, \
        "%s: %d of %d samples have main() off the line calling the leaf" % (what, off_call_line, total)
    shares = leaf_shares(stacks)
    assert max(shares, key=shares.get) == "busy", (what, shares)
    assert shares["busy"] >= 0.60, (what, shares)
    assert shares.get("other", 0) >= 0.05, (what, shares)
    # Nearly all of busy()'s time is on its loop line.
    by_line = {}
    for frames, count in stacks:
        if frames[-1].name == "busy":
            by_line[frames[-1].line] = by_line.get(frames[-1].line, 0) + count
    assert max(by_line, key=by_line.get) == lines["busy_loop"], (what, by_line)


def test_record_cpu_attach_raw(python, spawn, tmp_path):
    target = spawn(python, "cpu_busy.py")
    out = str(tmp_path / "cpu.txt")
    res = run_pyrometer(["record", "-f", "raw", "-r", 200, "-d", 2, "-o", out, "-p", target.pid]).expect(0)
    check_summary(res, out)
    check_cpu_busy_profile(read_collapsed(out), marker_lines(CPU_BUSY), "attach")
    assert target.proc.poll() is None, "attaching must not kill or stop the target"


def test_record_cpu_launch_raw(python, tmp_path):
    out = str(tmp_path / "cpu.txt")
    res = run_pyrometer(["record", "-f", "raw", "-r", 200, "-o", out, "--",
                         python.path, CPU_BUSY, "--seconds", 2]).expect(0)
    assert res.stdout.startswith("ready "), "the program's stdout must pass through:\n" + res.describe()
    assert "exited with status 0" in res.stderr, res.describe()
    check_summary(res, out)
    check_cpu_busy_profile(read_collapsed(out), marker_lines(CPU_BUSY), "launch", startup=True)


def test_record_nolineno(python, spawn, tmp_path):
    target = spawn(python, "cpu_busy.py")
    out = str(tmp_path / "cpu.txt")
    run_pyrometer(["record", "-f", "raw", "--nolineno", "-d", 1, "-o", out, "-p", target.pid]).expect(0)
    stacks = read_collapsed(out)
    assert stacks, "no samples"
    for frames, _ in stacks:
        for frame in frames:
            assert frame.line is None and frame.file == "cpu_busy.py", frames
    # Without line numbers, each distinct call path is one line.
    paths = [tuple(f.name for f in frames) for frames, _ in stacks]
    assert len(paths) == len(set(paths)), paths
    assert ("<module>", "main", "busy") in paths, paths


def test_record_full_filenames(python, spawn, tmp_path):
    target = spawn(python, "cpu_busy.py")
    lines = marker_lines(CPU_BUSY)
    out = str(tmp_path / "cpu.txt")
    run_pyrometer(["record", "-f", "raw", "--full-filenames", "-d", 1, "-o", out,
                   "-p", target.pid]).expect(0)
    stacks = read_collapsed(out)
    assert stacks, "no samples"
    for frames, _ in stacks:
        assert frames[0] == Frame("<module>", CPU_BUSY, lines["module_calls_main"]), frames
        for frame in frames:
            assert frame.file == CPU_BUSY and frame.line is not None, frames


def test_record_cpu_speedscope(python, spawn, tmp_path):
    target = spawn(python, "cpu_busy.py")
    out = str(tmp_path / "cpu.speedscope.json")
    run_pyrometer(["record", "-f", "speedscope", "-r", 200, "-d", 1, "-o", out,
                   "-p", target.pid]).expect(0)
    frames, profiles = load_speedscope(out)
    assert len(profiles) == 1, "one thread, one profile: %r" % [p["name"] for p in profiles]
    stacks = speedscope_stacks(frames, profiles[0])
    total = sum(w for _, w in stacks)
    assert total > 0, "no samples"
    busy = 0
    for names, weight in stacks:
        functions = [speedscope_function(n) for n in names]
        assert functions[:2] == ["<module>", "main"], "stacks are root first: %r" % functions
        if functions[-1] == "busy":
            busy += weight
    assert busy / total >= 0.6, (busy, total)


def test_record_cpu_flamegraph_default(python, spawn, tmp_path):
    target = spawn(python, "cpu_busy.py")
    out = str(tmp_path / "cpu.svg")
    run_pyrometer(["record", "-d", 1, "-o", out, "-p", target.pid]).expect(0)
    root = ET.parse(out).getroot()
    assert root.tag.rsplit("}", 1)[-1] == "svg", root.tag
    text = " ".join(root.itertext())
    for needle in ("busy", "<module>", "cpu_busy.py"):
        assert needle in text, "%r not in the SVG's text" % needle


def test_record_idle_threads_speedscope(python, spawn, tmp_path):
    """-i keeps idle threads: 11 parked threads give 11 thread profiles."""
    target = spawn(python, "threads10.py", threads=11)
    lines = marker_lines(target_path("threads10.py"))
    out = str(tmp_path / "threads.json")
    run_pyrometer(["record", "-i", "-f", "speedscope", "-r", 50, "-d", 1, "-o", out,
                   "-p", target.pid]).expect(0)
    frames, profiles = load_speedscope(out)
    assert len(profiles) == 11, [p["name"] for p in profiles]
    workers = mains = 0
    for profile in profiles:
        stacks = speedscope_stacks(frames, profile)
        assert stacks and sum(w for _, w in stacks) > 0, "profile %r has no samples" % profile["name"]
        leaves = {tuple(speedscope_function(n) for n in names) for names, _ in stacks}
        assert len(leaves) == 1, "a parked thread has one stack: %r" % leaves
        functions = leaves.pop()
        assert functions[-2:] == (python.name("Event.wait"), python.name("Condition.wait")), functions
        if functions[0] == "<module>":
            mains += 1
            assert functions[1] == "main", functions
        else:
            workers += 1
            assert functions[0] == python.name("Thread._bootstrap"), functions
            assert functions[-3] == "parked_worker", functions
    assert (workers, mains) == (10, 1)
    # The worker's frame carries its line, in the frame's "line" or in its label.
    worker_frames = [f for f in frames if speedscope_function(f["name"]) == "parked_worker"]
    assert worker_frames, frames
    for f in worker_frames:
        line = f.get("line")
        if line is None:
            label = LABEL_RE.match(f["name"])
            assert label and label.group("line"), "no line for %r" % f
            line = int(label.group("line"))
        assert line == lines["worker_wait"], f


def test_record_idle_threads_left_out(python, spawn, tmp_path):
    """Without -i, threads that are not on a CPU are left out: no stacks at all."""
    target = spawn(python, "threads10.py", threads=11)
    out = str(tmp_path / "threads.txt")
    run_pyrometer(["record", "-f", "raw", "-r", 50, "-d", 1, "-o", out, "-p", target.pid]).expect(0)
    stacks = read_collapsed(out)
    assert stacks == [], "idle threads must be left out without -i:\n%s" % stacks


def test_record_recursion(python, spawn, tmp_path):
    target = spawn(python, "rec20.py")
    lines = marker_lines(target_path("rec20.py"))
    depth = target.info["depth"]
    out = str(tmp_path / "rec.txt")
    run_pyrometer(["record", "-f", "raw", "-r", 500, "-d", 2, "-o", out, "-p", target.pid]).expect(0)
    stacks = read_collapsed(out)
    total = total_samples(stacks)
    assert total >= 500, "only %d samples at -r 500 -d 2" % total
    deepest = off_call_line = 0
    for frames, count in stacks:
        assert frames[0] == Frame("<module>", "rec20.py", lines["module_calls_main"]), \
            "wrong root (%d samples): %r" % (count, frames)
        assert frames[1].name == "main" and frames[1].file == "rec20.py", frames
        assert len(frames) <= depth + 2, "%d frames: %r" % (len(frames), frames)
        recs = frames[2:]
        if recs:
            assert frames[1].line == lines["main_calls_rec"], frames
        for frame in recs:
            assert frame.name == "rec" and frame.file == "rec20.py", frames
        # A rec frame with a callee is at its call site, unless the sample was
        # torn (pyrometer reads a running target without pausing it): rare.
        if any(frame.line != lines["rec_call"] for frame in recs[:-1]):
            off_call_line += count
        if len(frames) == depth + 2:
            deepest += count
    assert deepest / total >= 0.5, "full-depth stacks are %d of %d samples" % (deepest, total)
    assert off_call_line / total <= 0.02, \
        "%d of %d samples have a calling rec frame off its call line" % (off_call_line, total)


def test_record_unicode(python, spawn, tmp_path):
    skip_without_unicode_identifiers(python)
    target = spawn(python, UNICODE_TARGET, "burn")
    lines = marker_lines(target_path(UNICODE_TARGET))
    func, method = "fünctiön_λ", python.name("Klässe.méthode")

    out = str(tmp_path / "uni.txt")
    run_pyrometer(["record", "-f", "raw", "-d", 1, "-o", out, "-p", target.pid]).expect(0)
    stacks = read_collapsed(out)
    assert any(frames[-2:] == [Frame(method, UNICODE_TARGET, lines["method_calls"]),
                               Frame(func, UNICODE_TARGET, lines["uni_work"])]
               for frames, _ in stacks), stacks

    out = str(tmp_path / "uni.json")
    run_pyrometer(["record", "-f", "speedscope", "-d", 1, "-o", out, "-p", target.pid]).expect(0)
    frames, profiles = load_speedscope(out)
    names = {speedscope_function(f["name"]) for f in frames}
    assert func in names and method in names, names
    assert any(UNICODE_TARGET in (f.get("file") or "") or UNICODE_TARGET in f["name"] for f in frames), frames

    out = str(tmp_path / "uni.svg")
    run_pyrometer(["record", "-f", "flamegraph", "-d", 1, "-o", out, "-p", target.pid]).expect(0)
    text = unicodedata.normalize("NFC", " ".join(ET.parse(out).getroot().itertext()))
    for needle in (func, method, UNICODE_TARGET, "<module>"):
        assert needle in text, "%r not in the SVG's text" % needle


def test_record_multiline_lines(python, spawn, tmp_path):
    """Recorded stacks of three parked threads carry the interpreter's own lines."""
    target = spawn(python, "multiline.py", threads=3)
    expected = multiline_expectations(target.info)
    out = str(tmp_path / "multi.txt")
    run_pyrometer(["record", "-i", "-f", "raw", "-r", 50, "-d", 1, "-o", out,
                   "-p", target.pid]).expect(0)
    got = sorted(repr(list(reversed(frames))) for frames, _ in read_collapsed(out))
    want = sorted(repr(frames) for _, frames in expected.values())
    assert got == want
