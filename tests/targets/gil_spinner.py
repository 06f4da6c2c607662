# -*- coding: utf-8 -*-
"""
gil_spinner.py — one thread holds the GIL, three others wait without it.

"spinner" runs a pure-Python loop (it holds the GIL except for brief
hand-offs); "waiter-0".."waiter-2" block on an Event (no GIL); the main
thread blocks in join().  Prints `ready {"pid", "spinner_tid", "waiter_tids"}`
once every thread is in place.
"""
from __future__ import print_function

import json
import sys
import os
import threading

started = threading.Event()
never = threading.Event()
tids = {}


def native_id():
    get = getattr(threading, "get_native_id", None)   # 3.8+
    if get:
        return get()
    import ctypes
    return ctypes.CDLL(None).syscall(186)  # SYS_gettid on x86-64


def spin():
    tids["spinner"] = native_id()
    started.set()
    total = 0
    while True:
        total += 1  # LINE:spin_loop


def wait(i):
    tids["waiter-%d" % i] = native_id()
    never.wait()


def main():
    spinner = threading.Thread(target=spin, name="spinner")
    spinner.daemon = True
    waiters = [threading.Thread(target=wait, args=(i,), name="waiter-%d" % i) for i in range(3)]
    for w in waiters:
        w.daemon = True
        w.start()
    spinner.start()
    started.wait()
    while len(tids) < 4:
        pass
    sys.stdout.write("ready " + json.dumps({
        "pid": os.getpid(), "spinner_tid": tids["spinner"],
        "waiter_tids": sorted(tids["waiter-%d" % i] for i in range(3))}) + "\n")
    sys.stdout.flush()
    spinner.join()


main()
