# -*- coding: utf-8 -*-
"""
threads10.py — ten threads and the main thread, all parked on Events.

Threads "worker-0" .. "worker-9" run parked_worker(), which waits on an Event
at LINE:worker_wait; the main thread waits in main() at LINE:main_wait. Prints
`ready {"pid", "main": {ident,native_id,name}, "workers": [...]}` once all
eleven are blocked; afterwards the process has exactly 11 threads.
Runs on CPython 2.7 and 3.6+ (workers register their OS thread ids, which
threading only knows from 3.8).
"""

import os
import threading

from _parked import (announce_when_parked, get_ident, in_event_wait, register_native_id,
                     start_daemon, thread_info)

N_WORKERS = 10


def parked_worker(event):
    register_native_id()
    event.wait()  # LINE:worker_wait


def main():
    stop = threading.Event()
    workers = [start_daemon(parked_worker, "worker-%d" % i, args=(stop,))
               for i in range(N_WORKERS)]
    checks = dict((w.ident, in_event_wait("parked_worker")) for w in workers)
    checks[get_ident()] = in_event_wait("main")
    me = thread_info()
    announce_when_parked(checks, lambda: {
        "pid": os.getpid(), "main": me, "workers": [thread_info(w) for w in workers]})
    stop.wait()  # LINE:main_wait


main()  # LINE:module_calls_main
