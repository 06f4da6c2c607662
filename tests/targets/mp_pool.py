# -*- coding: utf-8 -*-
"""
mp_pool.py — a multiprocessing pool of 3 workers kept busy forever.

Prints `ready {"pid", "workers": [pids]}` once the workers exist.  Workers
run work() (a CPU loop); the parent waits in pool.map.
"""
from __future__ import print_function

import json
import sys
import multiprocessing
import os


def work(n):
    total = 0
    for i in range(n):  # LINE:work_loop
        total += i * i
    return total


def main():
    pool = multiprocessing.Pool(3)
    workers = sorted(p.pid for p in pool._pool)
    sys.stdout.write("ready " + json.dumps({"pid": os.getpid(), "workers": workers}) + "\n")
    sys.stdout.flush()
    while True:
        pool.map(work, [300000] * 6)


if __name__ == "__main__":
    main()
