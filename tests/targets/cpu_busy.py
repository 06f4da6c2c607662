# -*- coding: utf-8 -*-
"""
cpu_busy.py — a CPU-bound main thread with a fixed 80/20 split of work.

main() loops: busy() runs 400,000 iterations, other() runs 100,000 of the
same loop body, so busy() is the leaf in ~80% of samples and other() in ~20%
(the split is by iteration counts, not by time). Prints `ready {"pid"}` before
the first round.

    cpu_busy.py [--seconds S] [--exit-code N]
--seconds: stop after the round that crosses S seconds (default: run forever).
--exit-code: exit status when stopping (default 0).
Runs on CPython 2.7 and 3.6+.
"""

import argparse
import json
import os
import sys
import time

monotonic = getattr(time, "monotonic", time.time)
try:
    range = xrange  # Python 2: no list of 400,000 ints per call
except NameError:
    pass


def busy():
    total = 0
    for i in range(400000): total += i * i  # LINE:busy_loop
    return total


def other():
    total = 0
    for i in range(100000): total += i * i  # LINE:other_loop
    return total


def main(seconds, exit_code):
    sys.stdout.write(READY)  # C calls only: no Python frame above main() but busy/other
    sys.stdout.flush()
    deadline = monotonic() + seconds if seconds is not None else None
    while deadline is None or monotonic() < deadline:
        busy()  # LINE:main_calls_busy
        other()  # LINE:main_calls_other
    sys.exit(exit_code)


parser = argparse.ArgumentParser()
parser.add_argument("--seconds", type=float)
parser.add_argument("--exit-code", type=int, default=0)
args = parser.parse_args()
READY = "ready " + json.dumps({"pid": os.getpid()}) + "\n"
main(args.seconds, args.exit_code)  # LINE:module_calls_main
