#!/usr/bin/env python3
"""record_1khz.py — what sampling at 1 kHz costs, per CPython version.

For every interpreter found (pyenv 3.8–3.13 and Debian's /usr/bin/python3.11)
it starts bench/busy_target.py (one thread, a stack 20 frames deep, always on
CPU), attaches `pyrometer record -r RATE -d SECONDS -f raw`, and reports:
pyrometer's own CPU time (user+sys, from wait4), samples taken versus asked
for, and the error rate (thread stacks dropped as torn / all thread stacks).
Prints a table and, with --json FILE, writes the figures as JSON.  Never
fails a build: a missing interpreter is reported as missing.

    python3 bench/record_1khz.py [--rate 1000] [--seconds 10] [--json out.json]
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BINARY = os.path.join(ROOT, "build", "pyrometer")
TARGET = os.path.join(HERE, "busy_target.py")
SUMMARY = re.compile(r"(\d+) samples in ([\d.]+) s .*?; (\d+) errors \(([\d.]+)%\)")


def interpreters():
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = []
    for minor in range(8, 14):
        paths = sorted(glob.glob(os.path.join(root, "versions", "3.%d.*" % minor, "bin",
                                              "python3.%d" % minor)))
        found.append(("3.%d" % minor, paths[-1] if paths else None))
    found.append(("debian-3.11", "/usr/bin/python3.11" if os.path.exists("/usr/bin/python3.11")
                  else None))
    return found


def run_one(python, rate, seconds):
    target = subprocess.Popen([python, TARGET], stdout=subprocess.PIPE, text=True)
    try:
        line = target.stdout.readline()
        if not line.startswith("ready"):
            return {"error": "target did not start"}
        start = time.monotonic()
        proc = subprocess.Popen([BINARY, "record", "-r", str(rate), "-d", str(seconds), "-f", "raw",
                                 "-o", "/dev/null", "-p", str(target.pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        stderr = proc.stderr.read()
        wall = time.monotonic() - start
        m = SUMMARY.search(stderr)
        if not m:
            return {"error": "no summary: " + stderr.strip()[:200]}
        samples, secs, errors, error_pct = int(m.group(1)), float(m.group(2)), int(m.group(3)), \
            float(m.group(4))
        cpu = usage.ru_utime + usage.ru_stime
        return {
            "asked": int(rate * secs),
            "samples": samples,
            "achieved_pct": 100.0 * samples / (rate * secs),
            "errors": errors,
            "error_pct": error_pct,
            "cpu_s": cpu,
            "cpu_pct_of_core": 100.0 * cpu / wall,
            "us_per_sample": 1e6 * cpu / samples if samples else None,
            "max_rss_kb": usage.ru_maxrss,
        }
    finally:
        target.kill()
        target.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--json")
    args = ap.parse_args()
    if not os.path.exists(BINARY):
        sys.exit("build/pyrometer is missing: run make first")
    results = {}
    print("pyrometer record -r %g for %g s against a busy 20-frame target" % (args.rate, args.seconds))
    print("%-12s %9s %9s %9s %8s %9s %10s %9s" % ("python", "asked", "samples", "achieved", "errors",
                                                   "own CPU", "CPU/core", "us/sample"))
    for name, python in interpreters():
        if python is None:
            print("%-12s missing (not installed)" % name)
            results[name] = {"missing": True}
            continue
        r = run_one(python, args.rate, args.seconds)
        results[name] = r
        if "error" in r:
            print("%-12s error: %s" % (name, r["error"]))
            continue
        print("%-12s %9d %9d %8.1f%% %7.3f%% %8.2fs %9.1f%% %9.1f" % (
            name, r["asked"], r["samples"], r["achieved_pct"], r["error_pct"], r["cpu_s"],
            r["cpu_pct_of_core"], r["us_per_sample"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rate": args.rate, "seconds": args.seconds, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
