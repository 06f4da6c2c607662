"""
test_threads.py — the GIL holder, -g, -t, the GIL summary, --blocking and
-s (child processes), per interpreter.
"""
import json
import os
import re

from conftest import (read_collapsed, run_pyrometer, total_samples, dump_json, json_frames,
                      marker_lines, target_path)


def test_dump_shows_gil_holder(python, spawn):
    target = spawn(python, "gil_spinner.py")
    spinner = target.info["spinner_tid"]
    threads = dump_json(target.pid)
    assert len(threads) == 5, threads
    holders = [t for t in threads if t["owns_gil"]]
    # the spinner holds the GIL except for switch-interval hand-offs to
    # threads that only want it back to block again: take a few dumps
    for _ in range(5):
        if len(holders) == 1 and holders[0]["os_thread_id"] == spinner:
            break
        threads = dump_json(target.pid)
        holders = [t for t in threads if t["owns_gil"]]
    assert len(holders) == 1, "expected exactly one GIL holder: %r" % threads
    assert holders[0]["os_thread_id"] == spinner
    assert json_frames(holders[0])[0].name in ("spin",), json_frames(holders[0])
    waiters = [t for t in threads if t["os_thread_id"] in target.info["waiter_tids"]]
    assert len(waiters) == 3 and not any(t["active"] or t["owns_gil"] for t in waiters)


def test_record_gil_only_and_summary(python, spawn, tmp_path):
    target = spawn(python, "gil_spinner.py")
    spin_line = marker_lines(target_path("gil_spinner.py"))["spin_loop"]
    out = str(tmp_path / "gil.txt")
    res = run_pyrometer(["record", "-g", "-i", "-f", "raw", "-r", 200, "-d", 2, "-o", out,
                         "-p", target.pid]).expect(0)
    stacks = read_collapsed(out)
    total = total_samples(stacks)
    assert total >= 200, total
    # -g: only the GIL holder's stacks, which all end in the spinner's loop
    in_spin = sum(count for frames, count in stacks if frames[-1].name == "spin")
    assert in_spin / total >= 0.95, stacks
    assert any(f.line == spin_line for frames, _ in stacks for f in frames if f.name == "spin")
    m = re.search(r"GIL held in ([\d.]+)% of samples: (?:\S+ )?thread (\d+) ([\d.]+)%", res.stderr)
    assert m, res.stderr
    assert float(m.group(1)) >= 80.0, res.stderr
    assert int(m.group(2)) == target.info["spinner_tid"], res.stderr


def _roots_and_rest(path):
    """Collapsed lines whose first frame is synthetic: [(root, [frames...], count)]."""
    result = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            stack, count = line.rstrip("\n").rsplit(" ", 1)
            root, _, rest = stack.partition(";")
            result.append((root, rest, int(count)))
    return result


def test_record_threads_root_frames(python, spawn, tmp_path):
    target = spawn(python, "gil_spinner.py")
    out = str(tmp_path / "t.txt")
    run_pyrometer(["record", "-t", "-i", "-f", "raw", "-r", 100, "-d", 1, "-o", out,
                   "-p", target.pid]).expect(0)
    roots = {root for root, _, _ in _roots_and_rest(out)}
    names = {target.pid: "MainThread", target.info["spinner_tid"]: "spinner"}
    for i, tid in enumerate(target.info["waiter_tids"]):
        names[tid] = None   # waiter-0..2, in some order
    if python.version[:2] >= (3, 8):
        # threading's names are read from the target (3.8+)
        found = {}
        for root in roots:
            m = re.match(r'^Thread (\d+) "(.*)"$', root)
            assert m, root
            found[int(m.group(1))] = m.group(2)
        assert set(found) == set(names), (found, names)
        assert found[target.pid] == "MainThread" and found[target.info["spinner_tid"]] == "spinner"
        assert sorted(found[t] for t in target.info["waiter_tids"]) == \
            ["waiter-0", "waiter-1", "waiter-2"]
    else:
        assert roots == {"Thread %d" % tid for tid in names}, roots


def _proc_status(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
    return None


def test_blocking_is_consistent_and_resumes(python, spawn, tmp_path):
    target = spawn(python, "rec20.py")
    lines = marker_lines(target_path("rec20.py"))
    out = str(tmp_path / "b.txt")
    run_pyrometer(["record", "--blocking", "-f", "raw", "-r", 300, "-d", 2, "-o", out,
                   "-p", target.pid]).expect(0)
    stacks = read_collapsed(out)
    assert total_samples(stacks) >= 300
    for frames, count in stacks:
        # paused for each sample: never a torn stack, exact call lines
        assert frames[0].name == "<module>" and frames[1].name == "main", frames
        assert frames[1].line == lines["main_calls_rec"], frames
        assert all(f.name == "rec" and f.line == lines["rec_call"] for f in frames[2:-1]), frames
        assert len(frames) <= 22
    # and the target runs on, untraced
    assert _proc_status(target.pid, "TracerPid") == "0"
    assert _proc_status(target.pid, "State")[0] in "RS"


def test_subprocesses_record_and_dump(python, spawn, tmp_path):
    target = spawn(python, "mp_pool.py")
    workers = target.info["workers"]
    out = str(tmp_path / "s.txt")
    res = run_pyrometer(["record", "-s", "-f", "raw", "-r", 100, "-d", 2, "-o", out,
                         "-p", target.pid]).expect(0)
    roots = {}
    in_work = {}
    for root, rest, count in _roots_and_rest(out):
        m = re.match(r"process (\d+): ", root)
        assert m, root
        pid = int(m.group(1))
        roots[pid] = roots.get(pid, 0) + count
        if re.search(r"(^|;)work \(mp_pool\.py:\d+\)", rest):
            in_work[pid] = in_work.get(pid, 0) + count
    assert set(roots) == set(workers) | {target.pid}, (workers, roots)
    assert "sampled 4 processes" in res.stderr, res.stderr
    # workers spend their time in work()
    for pid in workers:
        assert in_work.get(pid, 0) >= 0.5 * roots[pid], (pid, in_work, roots)
    res = run_pyrometer(["dump", "-s", "--json", "-p", target.pid]).expect(0)
    pids = {t["pid"] for t in json.loads(res.stdout)}
    assert pids == set(workers) | {target.pid}, pids


def test_blocking_killed_pyrometer_leaves_target_running(python, spawn, background):
    """SIGKILL of pyrometer in the middle of --blocking sampling: the kernel
    detaches the seized threads, so the target is never left stopped."""
    import signal
    import time
    target = spawn(python, "rec20.py")
    for attempt in range(5):
        run = background(["record", "--blocking", "-r", 2000, "-d", 30, "-f", "raw",
                          "-o", "/dev/null", "-p", target.pid])
        time.sleep(0.2 + 0.05 * attempt)   # let it pause and resume many times
        os.kill(run.pid, signal.SIGKILL)
        run.proc.wait(timeout=10)   # killed on purpose: not a crash to report
        # every thread of the target must run on, untraced
        for tid in os.listdir("/proc/%d/task" % target.pid):
            with open("/proc/%d/task/%s/status" % (target.pid, tid)) as f:
                status = f.read()
            assert "TracerPid:\t0" in status, status
        with open("/proc/%d/stat" % target.pid) as f:
            before = int(f.read().rsplit(")", 1)[1].split()[11])   # utime
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with open("/proc/%d/stat" % target.pid) as f:
                if int(f.read().rsplit(")", 1)[1].split()[11]) > before:
                    break
            time.sleep(0.05)
        else:
            raise AssertionError("target stopped running after pyrometer was killed")
