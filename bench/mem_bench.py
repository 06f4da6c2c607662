#!/usr/bin/env python3
"""
mem_bench.py — figures for `pyrometer mem` (make bench-mem; never fails).

Workload: bench/mem_workload.py (4 M small allocations and frees in 30
rounds, and a known 64 MiB bytearray held once), on Debian's
/usr/bin/python3.11 (where python3-scalene lives) unless --python is given.
Each configuration is run --runs times, interleaved (plain, full, sampled,
scalene, plain, ...), and the workload's own loop time is compared by medians:
  full      pyrometer mem run (every allocation, Python stacks)
  sampled   pyrometer mem run --sample 512K
  scalene   python3 -m scalene --cli --memory (Debian's python3-scalene),
            reported as missing when not installed
Peak accuracy: pyrometer's peak against the true peak (tracemalloc's peak of
the same workload in a separate run).  Bytes per event: capture size /
(allocations + frees) of the full run.
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


def loop_time(text):
    m = re.search(r"^done ([\d.]+)", text, re.M)
    return float(m.group(1)) if m else None


def run(argv, env=None):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=900)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def parse_bytes(text):
    m = SIZE.match(text)
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def true_peak(python, rounds):
    code = ("import tracemalloc,runpy,sys; tracemalloc.start(); sys.argv=[%r,%r]; "
            "runpy.run_path(%r, run_name='__main__'); print('peak', tracemalloc.get_traced_memory()[1])"
            % (WORKLOAD, str(rounds), WORKLOAD))
    _, out, _ = run([python, "-c", code])
    m = re.search(r"peak (\d+)", out)
    return int(m.group(1)) if m else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default="/usr/bin/python3.11")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--quick", action="store_true")
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
    configs = ["plain", "full", "sampled"] + (["scalene"] if has_scalene else [])
    times = {c: [] for c in configs}
    full_peaks, sampled_peaks, bpe = [], [], []
    for i in range(a.runs):
        for c in configs:
            cap = os.path.join(tmp, "%s.cap" % c)
            if c == "plain":
                argv = [a.python, WORKLOAD, str(a.rounds)]
            elif c == "full":
                argv = [PYROMETER, "mem", "run", "-o", cap, "--", a.python, WORKLOAD, str(a.rounds)]
            elif c == "sampled":
                argv = [PYROMETER, "mem", "run", "--sample", "512K", "-o", cap, "--", a.python,
                        WORKLOAD, str(a.rounds)]
            else:
                argv = [a.python, "-m", "scalene", "--cli", "--memory", "--outfile",
                        os.path.join(tmp, "scalene.txt"), WORKLOAD, str(a.rounds)]
            rc, out, err = run(argv)
            t = loop_time(out)
            if t is not None:
                times[c].append(t)
            if c in ("full", "sampled"):
                m = re.search(r"peak (\S+ \S+) at", err)
                if m:
                    (full_peaks if c == "full" else sampled_peaks).append(parse_bytes(m.group(1)))
                m = re.search(r"([\d.]+) bytes per event", err)
                if m and c == "full":
                    bpe.append(float(m.group(1)))
            for f in os.listdir(tmp):
                if f.endswith(".cap") or ".cap." in f:
                    os.unlink(os.path.join(tmp, f))
        sys.stderr.write("\rmem_bench: run %d/%d" % (i + 1, a.runs))
    sys.stderr.write("\n")
    truth = true_peak(a.python, a.rounds)
    base = statistics.median(times["plain"]) if times["plain"] else None
    print("pyrometer mem benchmark: %s, workload bench/mem_workload.py %d rounds, %d interleaved runs"
          % (a.python, a.rounds, a.runs))
    print("%-10s %10s %9s" % ("config", "median s", "slowdown"))
    for c in ["plain", "full", "sampled", "scalene"]:
        if c == "scalene" and not has_scalene:
            print("%-10s %10s %9s" % (c, "missing", "(python3-scalene not installed)"))
            continue
        if not times[c]:
            print("%-10s %10s" % (c, "failed"))
            continue
        m = statistics.median(times[c])
        print("%-10s %10.3f %8.2fx" % (c, m, m / base if base else float("nan")))
    if truth:
        print("true peak (tracemalloc): %.1f MiB" % (truth / 2 ** 20))
        for name, peaks in (("full", full_peaks), ("sampled", sampled_peaks)):
            if peaks:
                errs = [abs(p - truth) / truth * 100 for p in peaks]
                print("peak %-8s median %.1f MiB, error median %.1f%% (max %.1f%%)"
                      % (name, statistics.median(peaks) / 2 ** 20, statistics.median(errs), max(errs)))
    if bpe:
        print("capture: %.1f bytes per allocation event (median)" % statistics.median(bpe))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # figures only: never fail a build
        print("mem_bench: failed: %s" % e)
        sys.exit(0)
