#!/usr/bin/env python3
"""run.py — `make bench`: what pyrometer costs and how right it is, per CPython.

For every interpreter (pyenv 3.8–3.13 under `pyenv root`/versions, and Debian's
/usr/bin/python3.11; a missing one is printed as missing) it measures:

  cost      pyrometer's own CPU per sample (user+sys from wait4 rusage divided by
            samples), median and p99 across repeated short runs at 1 kHz against
            bench/busy_target.py (one thread, 20 frames, always on CPU); its CPU
            per 10 s of sampling at 100 Hz / 1 kHz (scaled from the run); peak RSS.
  rate      samples achieved versus asked at 100 Hz, 1 kHz and 10 kHz.
  errors    errors / thread stacks from the summary line, on the busy target,
            8 threads mixing CPU and sleep (threads_target.py) and a 300-frame
            recursion (deep_target.py).
  slowdown  wall time of a fixed amount of work (work_target.py, timed inside
            the target) with and without pyrometer attached at 1 kHz, runs
            interleaved A B A B ..., median ratio.  Same for `python -m cProfile`.
  accuracy  calibrated_target.py spins 6/3/1 ms in f60/f30/f10; sampled at 100 Hz
            for 20 s (10 s with --quick): the largest gap, in percentage points,
            between measured leaf shares and the true 60/30/10.
  peers     Debian's austin (CPU per sample, rate, slowdown; reads 3.8–3.10),
            Debian's python3-scalene on /usr/bin/python3.11 (slowdown only).
            A peer that is not installed is reported as missing.
  render    bench/render_bench.c: time and size of the flame graph SVG for a
            profile with 100 000 distinct stacks.

Prints tables; never fails (exit status 0 whatever happens).

    python3 bench/run.py [--quick] [--json FILE] [--only 3.11,...]
"""
import argparse
import glob
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BINARY = os.path.join(ROOT, "build", "pyrometer")
BUSY = os.path.join(HERE, "busy_target.py")
THREADS = os.path.join(HERE, "threads_target.py")
DEEP = os.path.join(HERE, "deep_target.py")
CALIBRATED = os.path.join(HERE, "calibrated_target.py")
WORK = os.path.join(HERE, "work_target.py")
SUMMARY = re.compile(r"(\d+) samples in ([\d.]+) s \(([\d.]+) Hz, asked ([\d.]+)\).*?; "
                     r"(\d+) errors \(([\d.]+)%\)")
TRUE_SHARES = {"f60": 60.0, "f30": 30.0, "f10": 10.0}


def pyenv_root():
    try:
        out = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))


def interpreters():
    root = pyenv_root()
    found = []
    for minor in range(8, 14):
        paths = sorted(glob.glob(os.path.join(root, "versions", "3.%d.*" % minor, "bin",
                                              "python3.%d" % minor)),
                       key=lambda p: [int(x) if x.isdigit() else 0
                                      for x in re.split(r"[.]", p.split("/versions/")[1].split("/")[0])])
        found.append(("3.%d" % minor, paths[-1] if paths else None))
    found.append(("deb-3.11", "/usr/bin/python3.11" if os.path.exists("/usr/bin/python3.11")
                  else None))
    return found


def pct(values, q):
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-q * len(s) // 100)) - 1))
    return s[k]


class Target:
    """A target script started with `python script args`, ready once it prints "ready PID"."""

    def __init__(self, python, script, *args, prefix=()):
        self.proc = subprocess.Popen(list(prefix) + [python, script] + [str(a) for a in args],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            self.close()
            raise RuntimeError("target %s did not start" % os.path.basename(script))
        self.pid = int(line.split()[1])

    def elapsed(self):
        for line in self.proc.stdout:
            if line.startswith("elapsed"):
                self.proc.wait()
                return float(line.split()[1])
        self.proc.wait()
        raise RuntimeError("target printed no elapsed time")

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def record(pid, rate, seconds, output="/dev/null", extra=(), fmt="raw"):
    """Run pyrometer record against pid; return summary figures, rusage, and
    pyrometer's own cost figures (PYROMETER_STATS: CPU per sample's work,
    median and p99 over every sample, system calls per sample, its own peak
    RSS)."""
    fd, stats_path = tempfile.mkstemp(prefix="pyrometer-stats-", suffix=".json")
    os.close(fd)
    env = dict(os.environ, PYROMETER_STATS=stats_path)
    try:
        proc = subprocess.Popen([BINARY, "record", "-r", str(rate), "-d", str(seconds), "-f", fmt,
                                 "-o", output, "-p", str(pid)] + list(extra),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env=env)
        _, _, usage = os.wait4(proc.pid, 0)
        stderr = proc.stderr.read()
        proc.stderr.close()
        try:
            with open(stats_path) as f:
                stats = json.load(f)
        except (OSError, ValueError):
            stats = None
    finally:
        os.unlink(stats_path)
    m = SUMMARY.search(stderr)
    if not m:
        raise RuntimeError("no summary: " + stderr.strip()[:200])
    samples, secs, hz, asked, errors, err_pct = (int(m.group(1)), float(m.group(2)),
                                                float(m.group(3)), float(m.group(4)),
                                                int(m.group(5)), float(m.group(6)))
    cpu = usage.ru_utime + usage.ru_stime
    # errors / thread stacks: P% = 100*errors/stacks, so stacks = errors*100/P.
    stacks = errors * 100.0 / err_pct if err_pct > 0 else None
    out = {"samples": samples, "seconds": secs, "hz": hz, "asked": asked, "errors": errors,
           "error_pct": err_pct, "stacks": stacks, "cpu_s": cpu,
           "us_per_sample": 1e6 * cpu / samples if samples else None,
           "work_us_median": None, "work_us_p99": None, "syscalls_per_sample": None,
           "max_rss_kb": usage.ru_maxrss}
    if stats:
        out["work_us_median"] = stats["cost_us"]["median"]
        out["work_us_p99"] = stats["cost_us"]["p99"]
        out["syscalls_per_sample"] = stats["syscalls_per_sample"]
        out["max_rss_kb"] = stats["max_rss_kb"]   # pyrometer's own, not a child's
    return out


def wake_floor(seconds):
    """What the machine charges per wake-up, and for one sample-shaped
    process_vm_readv right after it (bench/wake_floor.c), at 1 kHz and 10 kHz."""
    exe = os.path.join(ROOT, "build", "wake_floor")
    b = subprocess.run(["gcc", "-O2", "-o", exe, "bench/wake_floor.c"], cwd=ROOT,
                       capture_output=True, text=True)
    if b.returncode:
        return {"error": "build failed: " + b.stderr.strip()[-200:]}
    out = {}
    for rate in (1000, 10000):
        p = subprocess.run([exe, str(rate), str(seconds)], capture_output=True, text=True)
        try:
            _, cpu, n, us, read_med, read_p99 = p.stdout.split()
            out[str(rate)] = {"us_per_wake": float(us), "core_pct": 100.0 * float(cpu) / seconds,
                              "read_us_median": float(read_med), "read_us_p99": float(read_p99)}
        except ValueError:
            out[str(rate)] = {"error": (p.stdout + p.stderr).strip()[:100]}
    return out


def long_run_rss(python, seconds, rate):
    """The memory figure: an hour at 100 Hz is 360 000 samples; the same
    number of samples of 10 000 distinct stacks (stacks_target.py), taken
    faster, into a flame graph.  Returns pyrometer's own peak RSS."""
    out_svg = os.path.join(tempfile.gettempdir(), "pyrometer-rss-bench.svg")
    raw = os.path.join(tempfile.gettempdir(), "pyrometer-rss-bench.txt")
    try:
        with Target(python, os.path.join(HERE, "stacks_target.py")) as t:
            x = record(t.pid, rate, seconds, output=out_svg, fmt="flamegraph")
        with Target(python, os.path.join(HERE, "stacks_target.py")) as t:
            y = record(t.pid, 1000, min(seconds, 20.0), output=raw)
        with open(raw) as f:
            distinct_short = sum(1 for line in f if line.strip())
        x["distinct_stacks_in_20s_at_1kHz"] = distinct_short
        return x
    finally:
        for path in (out_svg, raw):
            if os.path.exists(path):
                os.unlink(path)


def austin_run(pid, interval_us, seconds):
    """Run austin against pid for `seconds` (SIGINT); samples = output lines."""
    fd, out = tempfile.mkstemp(prefix="bench-austin-")
    os.close(fd)
    try:
        proc = subprocess.Popen(["austin", "-i", str(interval_us), "-o", out, "-p", str(pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        start = time.monotonic()
        deadline = start + seconds
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - start
        stderr = proc.stderr.read()
        proc.stderr.close()
        samples = 0
        with open(out, errors="replace") as f:
            for line in f:
                if line.strip() and not line.startswith("#"):
                    samples += 1
        if samples == 0:
            raise RuntimeError("austin wrote no samples: " + stderr.strip()[:160])
        cpu = usage.ru_utime + usage.ru_stime
        return {"samples": samples, "seconds": wall, "hz": samples / wall,
                "asked": 1e6 / interval_us, "cpu_s": cpu, "max_rss_kb": usage.ru_maxrss,
                "us_per_sample": 1e6 * cpu / samples}
    finally:
        os.unlink(out)


def leaf_shares(path):
    counts = {}
    total = 0
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, n = line.rpartition(" ")
            try:
                n = int(n)
            except ValueError:
                continue
            leaf = stack.split(";")[-1].split(" (")[0]
            counts[leaf] = counts.get(leaf, 0) + n
            total += n
    return {k: 100.0 * v / total for k, v in counts.items()} if total else {}


def timed_work(python, rounds, wait, sampler=None):
    """One run of work_target.py; sampler(pid) is started after "ready" and
    must return a function that waits for it.  Returns the work's seconds."""
    with Target(python, WORK, rounds, wait) as t:
        finish = sampler(t.pid) if sampler else None
        e = t.elapsed()
        if finish:
            finish()
        return e


def pyrometer_sampler(rate):
    def start(pid):
        p = subprocess.Popen([BINARY, "record", "-r", str(rate), "-d", "120", "-f", "raw",
                              "-o", "/dev/null", "-p", str(pid)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return p.wait
    return start


def austin_sampler(interval_us):
    def start(pid):
        p = subprocess.Popen(["austin", "-i", str(interval_us), "-o", "/dev/null", "-p", str(pid)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return p.wait
    return start


def slowdown(pairs, plain, other):
    """Interleave plain/other runs; median of per-pair ratios other/plain."""
    ratios, a, b = [], [], []
    for _ in range(pairs):
        x = plain()
        y = other()
        a.append(x)
        b.append(y)
        ratios.append(y / x)
    return {"ratio": statistics.median(ratios), "plain_s": statistics.median(a),
            "profiled_s": statistics.median(b), "pairs": pairs}


def austin_supports(version):
    return version in ("3.8", "3.9", "3.10")


def bench_python(name, python, cfg, log):
    r = {"python": python}
    # Warm-up: the first start of an interpreter pays for cold caches.
    subprocess.run([python, "-c", "pass"], capture_output=True)

    # Per-sample cost at 1 kHz on the busy target: pyrometer's CPU for each
    # sample's work (reads, walk, aggregation; measured inside it with the
    # thread's CPU clock), median and p99 over every sample of every run;
    # and all-in (its whole CPU time / samples, sleeping and waking included).
    with Target(python, BUSY) as t:
        runs = [record(t.pid, 1000, cfg["cost_s"]) for _ in range(cfg["cost_runs"])]
    per = [x["us_per_sample"] for x in runs if x["us_per_sample"]]
    r["allin_us_median"] = statistics.median(per)
    r["cost_us_median"] = statistics.median(x["work_us_median"] for x in runs
                                            if x["work_us_median"] is not None)
    r["cost_us_p99"] = statistics.median(x["work_us_p99"] for x in runs
                                         if x["work_us_p99"] is not None)
    r["syscalls_per_sample"] = statistics.median(x["syscalls_per_sample"] for x in runs
                                                 if x["syscalls_per_sample"] is not None)
    r["cost_runs"] = len(per)
    r["max_rss_kb"] = max(x["max_rss_kb"] for x in runs)

    # Achieved rate at 100 Hz / 1 kHz / 10 kHz; CPU per 10 s of sampling.
    r["rates"] = {}
    with Target(python, BUSY) as t:
        for rate in (100, 1000, 10000):
            x = record(t.pid, rate, cfg["rate_s"])
            x["achieved_pct"] = 100.0 * x["hz"] / rate
            x["cpu_per_10s"] = 10.0 * x["cpu_s"] / x["seconds"] if x["seconds"] else None
            r["rates"][str(rate)] = x
            r["max_rss_kb"] = max(r["max_rss_kb"], x["max_rss_kb"])

    # Error rates on the three workloads (busy: all runs above).
    busy = runs + list(r["rates"].values())
    errs = sum(x["errors"] for x in busy)
    stacks = sum(x["stacks"] if x["stacks"] else x["samples"] for x in busy)
    r["err_busy_pct"] = 100.0 * errs / stacks if stacks else 0.0
    for key, script in (("threads", THREADS), ("deep", DEEP)):
        with Target(python, script) as t:
            time.sleep(0.2)  # let the threads start
            x = record(t.pid, 1000, cfg["workload_s"])
        r[key] = x
        r["max_rss_kb"] = max(r["max_rss_kb"], x["max_rss_kb"])

    # Slowdown at 1 kHz, and cProfile's.
    rounds, wait, pairs = cfg["work_rounds"], 0.3, cfg["pairs"]
    plain = lambda: timed_work(python, rounds, wait)  # noqa: E731
    plain()  # warm-up: page cache, CPU frequency
    r["slowdown"] = slowdown(pairs, plain,
                             lambda: timed_work(python, rounds, wait, pyrometer_sampler(1000)))
    try:
        r["cprofile"] = slowdown(pairs, plain, lambda: _cprofile_run(python, rounds, wait))
    except Exception as e:  # noqa: BLE001
        r["cprofile"] = {"error": str(e)[:160]}

    # austin (3.8–3.10 only).
    if not shutil.which("austin"):
        r["austin"] = {"missing": True}
    elif not austin_supports(name):
        r["austin"] = {"unsupported": True}
    else:
        try:
            with Target(python, BUSY) as t:
                time.sleep(0.1)
                aruns = [austin_run(t.pid, 1000, cfg["cost_s"]) for _ in range(cfg["austin_runs"])]
            a = {"cost_us_median": statistics.median(x["us_per_sample"] for x in aruns),
                 "cost_us_p99": pct([x["us_per_sample"] for x in aruns], 99),
                 "achieved_pct": 100.0 * statistics.median(x["hz"] for x in aruns) / 1000,
                 "cpu_per_10s": 10.0 * statistics.median(x["cpu_s"] / x["seconds"] for x in aruns),
                 "max_rss_kb": max(x["max_rss_kb"] for x in aruns)}
            a["slowdown"] = slowdown(pairs, plain,
                                     lambda: timed_work(python, rounds, wait, austin_sampler(1000)))
            r["austin"] = a
        except Exception as e:  # noqa: BLE001
            r["austin"] = {"error": str(e)[:160]}

    # scalene: Debian's python3-scalene runs under Debian's python3.11 only.
    if name == "deb-3.11":
        if subprocess.run([python, "-c", "import scalene"], capture_output=True).returncode:
            r["scalene"] = {"missing": True}
        else:
            try:
                r["scalene"] = slowdown(pairs, plain, lambda: _scalene_run(python, rounds, wait))
            except Exception as e:  # noqa: BLE001
                r["scalene"] = {"error": str(e)[:160]}
    return r


def accuracy(pythons, seconds):
    """Calibrated target at 100 Hz, one interpreter at a time (two at a time on
    this 2-core machine skewed the shares by up to 20 points: preemption is not
    independent of the 6/3/1 ms phases).  Fills r["accuracy_*"]."""
    out = {}
    for i in range(len(pythons)):
        batch = pythons[i:i + 1]
        targets, procs, raws = [], [], []
        try:
            for name, python in batch:
                fd, raw = tempfile.mkstemp(prefix="bench-calib-", suffix=".txt")
                os.close(fd)
                raws.append(raw)
                targets.append(Target(python, CALIBRATED))
            for t, raw in zip(targets, raws):
                procs.append(subprocess.Popen(
                    [BINARY, "record", "-r", "100", "-d", str(seconds), "-f", "raw", "-o", raw,
                     "-p", str(t.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                    text=True))
            for (name, _), proc, raw in zip(batch, procs, raws):
                stderr = proc.communicate()[1]
                m = SUMMARY.search(stderr)
                shares = leaf_shares(raw)
                r = {"accuracy_shares": {k: shares.get(k, 0.0) for k in TRUE_SHARES}}
                r["accuracy_other_pct"] = 100.0 - sum(r["accuracy_shares"].values())
                r["accuracy_max_pp"] = (max(abs(shares.get(k, 0.0) - v)
                                            for k, v in TRUE_SHARES.items()) if shares else None)
                r["accuracy_samples"] = int(m.group(1)) if m else 0
                out[name] = r
        finally:
            for t in targets:
                t.close()
            for raw in raws:
                os.unlink(raw)
    return out


def _cprofile_run(python, rounds, wait):
    fd, out = tempfile.mkstemp(prefix="bench-cprofile-", suffix=".prof")
    os.close(fd)
    try:
        p = subprocess.run([python, "-m", "cProfile", "-o", out, WORK, str(rounds), str(wait)],
                           capture_output=True, text=True, timeout=600)
    finally:
        os.unlink(out)
    return _elapsed_of(p)


def _scalene_run(python, rounds, wait):
    p = subprocess.run([python, "-m", "scalene", "--cli", "--cpu-only", "--outfile", "/dev/null",
                        WORK, "---", str(rounds), str(wait)],
                       capture_output=True, text=True, timeout=600)
    return _elapsed_of(p)


def _elapsed_of(p):
    for line in p.stdout.splitlines():
        if line.startswith("elapsed"):
            return float(line.split()[1])
    raise RuntimeError("no elapsed time: " + (p.stderr or p.stdout).strip()[-160:])


def render_bench():
    exe = os.path.join(ROOT, "build", "render_bench")
    lib = os.path.join(ROOT, "build", "libpyrometer.a")
    if not os.path.exists(lib):
        return {"error": "build/libpyrometer.a is missing: run make first"}
    libs = subprocess.run(["pkg-config", "--libs", "libelf", "jansson", "zlib", "ncursesw",
                           "libunwind-ptrace", "libunwind-generic"], capture_output=True, text=True)
    libs = libs.stdout.split() if libs.returncode == 0 else \
        "-lelf -ljansson -lz -lncursesw -ltinfo -lunwind-ptrace -lunwind-generic -lunwind".split()
    cmd = ["gcc", "-std=gnu11", "-O2", "-D_GNU_SOURCE", "-Isrc", "-o", exe,
           "bench/render_bench.c", lib] + libs + ["-lm"]
    b = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if b.returncode:
        return {"error": "build failed: " + b.stderr.strip()[-300:]}
    svg = os.path.join(tempfile.gettempdir(), "render_bench.svg")
    p = subprocess.run([exe, svg], cwd=ROOT, capture_output=True, text=True, timeout=600)
    return {"output": (p.stdout + p.stderr).strip(), "returncode": p.returncode}


def fmt(v, spec, width):
    if v is None:
        return "-".rjust(width)
    return (spec % v).rjust(width)


def print_tables(results, cfg, floor=None, longrss=None):
    print()
    print("pyrometer — per CPython (%s run: cost %d x %gs at 1 kHz, rates %gs each, "
          "accuracy %gs at 100 Hz, slowdown %d interleaved pairs)" % (
              "quick" if cfg["quick"] else "full", cfg["cost_runs"], cfg["cost_s"], cfg["rate_s"],
              cfg["accuracy_s"], cfg["pairs"]))
    print("  work us: CPU per sample's work (reads, walk, aggregation), thread CPU clock, "
          "median / p99 over all samples;")
    print("  calls: system calls per sample; all-in us: all of pyrometer's CPU / samples "
          "(sleeping and waking included);")
    print("  CPU%: of one core while sampling the busy target; err: errors / thread stacks.")
    hdr = ("python", "work med", "work p99", "calls", "all-in", "100Hz", "1kHz", "10kHz",
           "CPU%@1k", "CPU%@10k", "err busy", "err 8thr", "err deep", "work 8thr", "work deep",
           "slowdown", "acc max pp", "RSS MB")
    widths = (9, 8, 8, 5, 6, 7, 7, 7, 8, 8, 8, 8, 8, 9, 9, 8, 10, 6)
    print(" ".join(h.rjust(w) for h, w in zip(hdr, widths)))
    for name, r in results.items():
        if r.get("missing"):
            print("%-9s missing (not installed)" % name)
            continue
        if "error" in r:
            print("%-9s error: %s" % (name, r["error"]))
            continue
        rt = r["rates"]
        cells = [
            name.rjust(widths[0]),
            fmt(r["cost_us_median"], "%.1f", widths[1]),
            fmt(r["cost_us_p99"], "%.1f", widths[2]),
            fmt(r.get("syscalls_per_sample"), "%.2f", widths[3]),
            fmt(r.get("allin_us_median"), "%.1f", widths[4]),
            fmt(rt["100"]["achieved_pct"], "%.1f%%", widths[5]),
            fmt(rt["1000"]["achieved_pct"], "%.1f%%", widths[6]),
            fmt(rt["10000"]["achieved_pct"], "%.1f%%", widths[7]),
            fmt(rt["1000"]["cpu_per_10s"] * 10, "%.2f%%", widths[8]),
            fmt(rt["10000"]["cpu_per_10s"] * 10, "%.2f%%", widths[9]),
            fmt(r["err_busy_pct"], "%.2f%%", widths[10]),
            fmt(r["threads"]["error_pct"], "%.2f%%", widths[11]),
            fmt(r["deep"]["error_pct"], "%.2f%%", widths[12]),
            fmt(r["threads"]["work_us_median"], "%.1f", widths[13]),
            fmt(r["deep"]["work_us_median"], "%.1f", widths[14]),
            fmt(r["slowdown"]["ratio"], "%.3fx", widths[15]),
            fmt(r.get("accuracy_max_pp"), "%.2f", widths[16]),
            fmt(r["max_rss_kb"] / 1024.0, "%.1f", widths[17]),
        ]
        print(" ".join(cells))
    if floor:
        print()
        if "error" in floor:
            print("wake-up floor: error: %s" % floor["error"])
        else:
            print("machine floor (bench/wake_floor.c: sleep to the next deadline, then one "
                  "process_vm_readv shaped like a 3.11+ sample, 4 ranges, nothing else):")
            for rate in ("1000", "10000"):
                f = floor.get(rate, {})
                if "us_per_wake" in f:
                    print("  %5s Hz: the read alone %.1f us median, %.1f us p99; everything per "
                          "wake-up %.1f us = %.2f%% of a core" % (
                              rate, f["read_us_median"], f["read_us_p99"], f["us_per_wake"],
                              f["core_pct"]))
            print("  (no sampler that wakes and reads once per sample can go below these here)")
    if longrss:
        print()
        if "error" in longrss:
            print("long run memory: error: %s" % longrss["error"])
        else:
            print("long run memory: %d samples (an hour at 100 Hz is 360 000) of "
                  "stacks_target.py (10 000 distinct stacks; %d seen in 20 s at 1 kHz) into a "
                  "flame graph: peak RSS %.1f MB, %d errors (%s)" % (
                      longrss["samples"], longrss.get("distinct_stacks_in_20s_at_1kHz", 0),
                      longrss["max_rss_kb"] / 1024.0, longrss["errors"], longrss["python"]))
    print()
    print("accuracy detail (calibrated target, leaf shares %, true 60/30/10):")
    for name, r in results.items():
        if "accuracy_shares" in r:
            s = r["accuracy_shares"]
            print("  %-9s f60 %5.2f  f30 %5.2f  f10 %5.2f  other %4.2f  (%d samples)" % (
                name, s["f60"], s["f30"], s["f10"], r["accuracy_other_pct"], r["accuracy_samples"]))
    print()
    print("peers (same machine, same run; us/smp = all of the profiler's CPU / samples, "
          "median over runs, p99 for pyrometer over samples of its work):")
    hdr = ("python", "profiler", "us/smp med", "us/smp p99", "1kHz", "CPU/10s@1k", "slowdown",
           "RSS MB")
    widths = (9, 10, 10, 10, 7, 10, 9, 6)
    print(" ".join(h.rjust(w) for h, w in zip(hdr, widths)))
    for name, r in results.items():
        if "rates" not in r:
            continue
        print(" ".join([name.rjust(9), "pyrometer".rjust(10),
                        fmt(r.get("allin_us_median"), "%.1f", 10), fmt(r["cost_us_p99"], "%.1f", 10),
                        fmt(r["rates"]["1000"]["achieved_pct"], "%.1f%%", 7),
                        fmt(r["rates"]["1000"]["cpu_per_10s"], "%.3fs", 10),
                        fmt(r["slowdown"]["ratio"], "%.3fx", 9),
                        fmt(r["max_rss_kb"] / 1024.0, "%.1f", 6)]))
        a = r.get("austin", {})
        if a.get("missing"):
            print("%s %s  missing (apt-get install austin)" % (name.rjust(9), "austin".rjust(10)))
        elif a.get("unsupported"):
            print("%s %s  n/a (Debian's austin 1.0.1 reads 3.8-3.10)" % (name.rjust(9),
                                                                         "austin".rjust(10)))
        elif "error" in a:
            print("%s %s  error: %s" % (name.rjust(9), "austin".rjust(10), a["error"]))
        else:
            print(" ".join([name.rjust(9), "austin".rjust(10), fmt(a["cost_us_median"], "%.1f", 10),
                            fmt(a["cost_us_p99"], "%.1f", 10), fmt(a["achieved_pct"], "%.1f%%", 7),
                            fmt(a["cpu_per_10s"], "%.3fs", 10),
                            fmt(a["slowdown"]["ratio"], "%.3fx", 9),
                            fmt(a["max_rss_kb"] / 1024.0, "%.1f", 6)]))
        c = r.get("cprofile", {})
        if "error" in c:
            print("%s %s  error: %s" % (name.rjust(9), "cProfile".rjust(10), c["error"]))
        else:
            print(" ".join([name.rjust(9), "cProfile".rjust(10), "-".rjust(10), "-".rjust(10),
                            "-".rjust(7), "-".rjust(10), fmt(c["ratio"], "%.3fx", 9),
                            "-".rjust(6)]))
        if "scalene" in r:
            s = r["scalene"]
            if s.get("missing"):
                print("%s %s  missing (apt-get install python3-scalene)" % (name.rjust(9),
                                                                          "scalene".rjust(10)))
            elif "error" in s:
                print("%s %s  error: %s" % (name.rjust(9), "scalene".rjust(10), s["error"]))
            else:
                print(" ".join([name.rjust(9), "scalene".rjust(10), "-".rjust(10), "-".rjust(10),
                                "-".rjust(7), "-".rjust(10), fmt(s["ratio"], "%.3fx", 9),
                                "-".rjust(6)]))
    if not any("scalene" in r for r in results.values()):
        print("%s %s  missing (needs Debian's /usr/bin/python3.11)" % ("-".rjust(9),
                                                                     "scalene".rjust(10)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a short run (under ~2 minutes)")
    ap.add_argument("--json", help="also write the figures as JSON to this file")
    ap.add_argument("--only", help="comma-separated interpreter names (3.8,...,deb-3.11)")
    ap.add_argument("--no-render", action="store_true", help="skip the flame graph render bench")
    ap.add_argument("--no-rss", action="store_true", help="skip the long-run memory figure")
    args = ap.parse_args()
    if args.quick:
        cfg = {"cost_runs": 2, "cost_s": 2.0, "rate_s": 0.6, "workload_s": 0.6,
               "accuracy_s": 10.0, "work_rounds": 800, "pairs": 2, "austin_runs": 2,
               "rss_s": 12.0}
    else:
        cfg = {"cost_runs": 5, "cost_s": 4.0, "rate_s": 3.0, "workload_s": 3.0,
               "accuracy_s": 20.0, "work_rounds": 2000, "pairs": 5, "austin_runs": 5,
               "rss_s": 72.0}
    cfg["quick"] = args.quick
    if not os.path.exists(BINARY):
        print("build/pyrometer is missing: run make first")
        return
    began = time.monotonic()
    results = {}
    only = set(args.only.split(",")) if args.only else None
    for name, python in interpreters():
        if only and name not in only:
            continue
        if python is None:
            results[name] = {"missing": True}
            print("%-9s missing (not installed)" % name, flush=True)
            continue
        t0 = time.monotonic()
        try:
            results[name] = bench_python(name, python, cfg, None)
        except Exception as e:  # noqa: BLE001 — a bench never fails a build
            results[name] = {"python": python, "error": "%s: %s" % (type(e).__name__, e)}
            traceback.print_exc()
        print("%-9s done in %.0f s (%s)" % (name, time.monotonic() - t0, python), flush=True)
    todo = [(n, results[n]["python"]) for n in results if "rates" in results[n]]
    if todo:
        t0 = time.monotonic()
        try:
            for name, r in accuracy(todo, cfg["accuracy_s"]).items():
                results[name].update(r)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
        print("accuracy  done in %.0f s (calibrated target at 100 Hz)" % (time.monotonic() - t0),
              flush=True)
    floor = longrss = None
    try:
        floor = wake_floor(2.0 if cfg["quick"] else 5.0)
    except Exception as e:  # noqa: BLE001
        floor = {"error": str(e)}
    rss_python = next((results[n]["python"] for n in ("3.11", "deb-3.11", "3.12")
                       if n in results and "rates" in results[n]), None)
    if rss_python and not args.no_rss:
        try:
            longrss = long_run_rss(rss_python, cfg["rss_s"], 5000)
            longrss["python"] = rss_python
        except Exception as e:  # noqa: BLE001
            longrss = {"error": str(e)}
    print_tables(results, cfg, floor, longrss)
    render = None
    if not args.no_render:
        try:
            render = render_bench()
        except Exception as e:  # noqa: BLE001
            render = {"error": str(e)}
        print()
        print("render (bench/render_bench.c, 100 000 distinct stacks):")
        print("  " + (render.get("output") or render.get("error", "")).replace("\n", "\n  "))
    total = time.monotonic() - began
    print()
    print("bench took %.0f s" % total)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": cfg, "results": results, "render": render,
                       "wake_floor": floor, "long_run_rss": longrss,
                       "seconds": total}, f, indent=2)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
    except Exception:  # noqa: BLE001
        traceback.print_exc()
    sys.exit(0)
