#!/usr/bin/env python3
"""
mem_bench.py — figures for `pyrometer mem` (make bench-mem; never fails).

Workload: bench/mem_workload.py (4 M small allocations and frees in 30
rounds, and a known 64 MiB bytearray held once), on Debian's
/usr/bin/python3.11 (where python3-scalene lives) unless --python is given.
Each configuration is run --runs times, interleaved (plain, full, sampled,
scalene, then the same rotated by one, ...); the workload reports its loop's wall and CPU time, and
slowdowns are medians (and minimums: the least disturbed run on a shared
machine) over the plain run's; "paired" is the median (and range) of each
run's CPU time over the plain run of the same round, which a slow spell of
the machine moves together:
  full      pyrometer mem run (every allocation, Python stacks)
  sampled   pyrometer mem run --sample 512K
  scalene   python3 -m scalene --cli --memory (Debian's python3-scalene),
            reported as missing when not installed
  tracemalloc  python3 -X tracemalloc=25 (the standard library's tracker,
            in the process, 25 frames a traceback; 3.4+)
CPU time is the steadier figure here: other work on the machine stretches
wall time, not the CPU a run takes (though it still slows it somewhat).

Peak accuracy, against a peak known by construction: what main() holds at
its peak (one round's rows and the 64 MiB block; `mem_workload.py
--construction` sums sys.getsizeof over exactly those objects) against
pyrometer's peak view summed over the stacks that go through main().  The
whole-process peak is printed beside tracemalloc's for context only:
tracemalloc does not see what the interpreter allocated before it started
or outside Python's allocators.  Bytes per event: capture size / events.

--instructions (needs valgrind): instructions per round counted by
callgrind, a figure the machine's load does not move: 2 and 4 rounds of
each configuration, the difference halved, so start-up is left out; and
the tracker's extra instructions per allocation event (an allocation or a
free; --events-per-round of them).

--depth N runs the workload N calls deeper (mem_workload.py --depth): the
tracker walks the allocating thread's frames at each allocation, so this
shows what a deep stack (a web service's) adds to every allocation.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.realpath(os.path.join(os.path.dirname(__file__), ".."))
PYROMETER = os.path.join(REPO, "build", "pyrometer")
WORKLOAD = os.path.join(REPO, "bench", "mem_workload.py")
SIZE = re.compile(r"([\d.]+) (B|KiB|MiB|GiB)")
UNITS = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3}
DONE = re.compile(r"^done ([\d.]+) \d+ cpu ([\d.]+)", re.M)


def run(argv, env=None):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=900)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def parse_bytes(text):
    m = SIZE.match(text)
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def tracemalloc_peak(python, rounds):
    code = ("import tracemalloc,runpy,sys; tracemalloc.start(); sys.argv=[%r,%r]; "
            "runpy.run_path(%r, run_name='__main__'); print('peak', tracemalloc.get_traced_memory()[1])"
            % (WORKLOAD, str(rounds), WORKLOAD))
    _, out, _ = run([python, "-c", code])
    m = re.search(r"peak (\d+)", out)
    return int(m.group(1)) if m else None


def by_construction(python):
    _, out, _ = run([python, WORKLOAD, "--construction"])
    m = re.search(r"construction (\d+)", out)
    return int(m.group(1)) if m else None


def held_by_main(capture, tmp):
    """Bytes of pyrometer's peak view whose stack goes through main()."""
    out = os.path.join(tmp, "peak.txt")
    rc, _, _ = run([PYROMETER, "mem", "report", capture, "--peak", "-f", "raw", "-o", out])
    if rc != 0:
        return None
    total = 0
    with open(out, encoding="utf-8") as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if any(fr.startswith("main (") and "mem_workload.py" in fr for fr in stack.split(";")):
                total += int(count)
    os.unlink(out)
    return total


def workload(rounds, depth):
    """The workload's arguments: ROUNDS, and --depth N when not 0."""
    return [WORKLOAD, str(rounds)] + (["--depth", str(depth)] if depth else [])


def instructions(python, extra_env, depth):
    """Instructions per round (4 rounds minus 2, halved) under callgrind."""
    counts = []
    for rounds in (2, 4):
        env = dict(os.environ, PYTHONHASHSEED="0", **extra_env)
        _, _, err = run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", python]
                        + workload(rounds, depth), env=env)
        m = re.search(r"I\s+refs:\s+([\d,]+)", err)
        if not m:
            return None
        counts.append(int(m.group(1).replace(",", "")))
    return (counts[1] - counts[0]) / 2


def stat(values, base):
    if not values or not base:
        return "%9s %9s %9s %9s" % ("-", "-", "-", "-")
    med, low = statistics.median(values), min(values)
    return "%9.3f %8.2fx %9.3f %8.2fx" % (med, med / statistics.median(base), low, low / min(base))


def paired(by_run, base_by_run):
    """Each run's time over the plain run of the same round (run next to
    it, so a slow spell of the machine moves both): median, and range."""
    ratios = [v / b for v, b in zip(by_run, base_by_run) if v and b]
    if not ratios:
        return "%9s %15s" % ("-", "-")
    return "%8.2fx %6.2f-%.2fx" % (statistics.median(ratios), min(ratios), max(ratios))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default="/usr/bin/python3.11")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--instructions", action="store_true")
    ap.add_argument("--events-per-round", type=int, default=276000)
    ap.add_argument("--depth", type=int, default=0,
                    help="run the workload this many calls deeper (mem_workload.py --depth)")
    a = ap.parse_args()
    if a.quick:
        a.runs, a.rounds = 3, 12
    if not os.access(PYROMETER, os.X_OK):
        print("mem_bench: build/pyrometer is not built (make)")
        return 0
    if not os.access(a.python, os.X_OK):
        print("mem_bench: %s not found" % a.python)
        return 0
    tmp = tempfile.mkdtemp(prefix="pyrometer-membench-")
    has_scalene = run([a.python, "-c", "import scalene"])[0] == 0
    has_tracemalloc = run([a.python, "-c", "import tracemalloc"])[0] == 0
    configs = (["plain", "full", "sampled"] + (["scalene"] if has_scalene else [])
               + (["tracemalloc"] if has_tracemalloc else []))
    wall = {c: [] for c in configs}
    cpu = {c: [] for c in configs}
    cpu_by_run = {c: [None] * a.runs for c in configs}
    peaks = {"full": [], "sampled": []}
    mains = {"full": [], "sampled": []}
    bpe = []
    tty = sys.stderr.isatty()
    work = workload(a.rounds, a.depth)
    for i in range(a.runs):
        # rotate the order each round: no configuration always follows
        # another (a capture's writeback, caches)
        for c in configs[i % len(configs):] + configs[:i % len(configs)]:
            cap = os.path.join(tmp, "%s.cap" % c)
            if c == "plain":
                argv = [a.python] + work
            elif c == "full":
                argv = [PYROMETER, "mem", "run", "-o", cap, "--", a.python] + work
            elif c == "sampled":
                argv = [PYROMETER, "mem", "run", "--sample", "512K", "-o", cap, "--",
                        a.python] + work
            elif c == "tracemalloc":
                argv = [a.python, "-X", "tracemalloc=25"] + work
            else:
                argv = [a.python, "-m", "scalene", "--cli", "--memory", "--outfile",
                        os.path.join(tmp, "scalene.txt")] + work
            rc, out, err = run(argv)
            m = DONE.search(out)
            if m:
                wall[c].append(float(m.group(1)))
                cpu[c].append(float(m.group(2)))
                cpu_by_run[c][i] = float(m.group(2))
            if c in peaks:
                m = re.search(r"peak (\S+ \S+) at", err)
                if m:
                    peaks[c].append(parse_bytes(m.group(1)))
                held = held_by_main(cap, tmp) if os.path.exists(cap) else None
                if held:
                    mains[c].append(held)
                m = re.search(r"([\d.]+) bytes per event", err)
                if m and c == "full":
                    bpe.append(float(m.group(1)))
            for f in os.listdir(tmp):
                if f.endswith(".cap") or ".cap." in f:
                    os.unlink(os.path.join(tmp, f))
            os.sync()
        if tty:
            sys.stderr.write("\rmem_bench: run %d/%d" % (i + 1, a.runs))
    if tty:
        sys.stderr.write("\n")
    truth = by_construction(a.python)
    tm_peak = tracemalloc_peak(a.python, a.rounds)
    print("pyrometer mem benchmark: %s, bench/mem_workload.py %d rounds%s, %d interleaved runs"
          % (a.python, a.rounds, " --depth %d" % a.depth if a.depth else "", a.runs))
    print("%-11s %9s %9s %9s %9s   %9s %15s   %9s %9s %9s %9s"
          % ("", "cpu med", "slowdown", "cpu min", "slowdown", "paired", "paired range",
             "wall med", "slowdown", "wall min", "slowdown"))
    for c in ["plain", "full", "sampled", "scalene", "tracemalloc"]:
        if c == "scalene" and not has_scalene:
            print("%-11s missing (python3-scalene not installed)" % c)
            continue
        if c == "tracemalloc" and not has_tracemalloc:
            print("%-11s missing (this Python has no tracemalloc)" % c)
            continue
        print("%-11s %s   %s   %s" % (c, stat(cpu[c], cpu["plain"]),
                                     paired(cpu_by_run[c], cpu_by_run["plain"]),
                                     stat(wall[c], wall["plain"])))
    if truth:
        print("main()'s peak by construction: %d bytes (%.2f MiB)" % (truth, truth / 2 ** 20))
        for name in ("full", "sampled"):
            if mains[name]:
                errs = [(h - truth) / truth * 100 for h in mains[name]]
                print("  %-8s held by main() at the peak: median %.2f MiB, error median %+.2f%% "
                      "(worst %+.2f%%)" % (name, statistics.median(mains[name]) / 2 ** 20,
                                          statistics.median(errs), max(errs, key=abs)))
    for name in ("full", "sampled"):
        if peaks[name]:
            print("whole-process peak, %-8s median %.1f MiB" % (name, statistics.median(peaks[name]) / 2 ** 20))
    if tm_peak:
        print("whole-process peak, tracemalloc %.1f MiB (Python's allocators after it started)"
              % (tm_peak / 2 ** 20))
    if bpe:
        print("capture: %.1f bytes per allocation event (median)" % statistics.median(bpe))
    if a.instructions:
        if run(["sh", "-c", "command -v valgrind"])[0] != 0:
            print("instructions: valgrind not installed")
        else:
            lib = os.path.join(REPO, "build", "libpyrometer-mem.so")
            cap = os.path.join(tmp, "ir.cap")
            base = instructions(a.python, {}, a.depth)
            for name, env in (("full", {}), ("sampled", {"PYROMETER_MEM_SAMPLE": "524288"})):
                env = dict(env, LD_PRELOAD=lib, PYROMETER_MEM_OUT=cap)
                n = instructions(a.python, env, a.depth)
                for f in os.listdir(tmp):
                    if f.startswith("ir.cap"):
                        os.unlink(os.path.join(tmp, f))
                if base and n:
                    print("instructions per round, %-8s %.1f M against %.1f M: %.2fx, %.0f more per "
                          "event" % (name, n / 1e6, base / 1e6, n / base,
                                     (n - base) / a.events_per_round))
    try:
        os.rmdir(tmp)
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # figures only: never fail a build
        print("mem_bench: failed: %s" % e)
        sys.exit(0)
