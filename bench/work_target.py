"""work_target.py — a fixed amount of work, timed from inside: for slowdown.

    python work_target.py [ITERATIONS] [WAIT_SECONDS]

Prints "ready PID", sleeps WAIT_SECONDS (time for a sampler to attach), then
does ITERATIONS rounds of work 20 frames deep that call small Python
functions (so deterministic profilers pay their per-call cost too) and prints
"elapsed SECONDS" measured with time.perf_counter around the work only."""
import os
import sys
import time


def small(x):
    return (x * 7 + 3) % 1013


def work(rounds):
    total = 0
    for _ in range(rounds):
        for i in range(1000):
            total += small(i)
    return total


def level(n, rounds):
    if n == 0:
        return work(rounds)
    return level(n - 1, rounds)


def run():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    wait = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    print("ready", os.getpid(), flush=True)
    time.sleep(wait)
    start = time.perf_counter()
    level(17, rounds)  # <module> + run + 18 level frames = 20
    print("elapsed %.6f" % (time.perf_counter() - start), flush=True)


run()
