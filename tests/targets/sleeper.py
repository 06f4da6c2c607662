# -*- coding: utf-8 -*-
"""
sleeper.py — parks its main thread four Python frames deep, for `dump` tests.

Stack while parked, innermost first (qualified names, as 3.11+ reports them):
    Parker.park.<locals>.inner   at LINE:inner_sleep   (in time.sleep, a C call)
    Parker.park                  at LINE:park_calls_inner
    main                         at LINE:main_calls_park
    <module>                     at LINE:module_calls_main
Prints `ready {"pid", "main": {"ident","native_id","name"}, "version", "executable"}`
once the main thread is asleep; the only thread left after that is the main one.
Runs on CPython 2.7 and 3.6+.
"""

import os
import platform
import sys
import threading
import time

from _parked import announce_when_parked, in_function, thread_info


class Parker(object):
    def park(self):
        def inner():
            time.sleep(3600)  # LINE:inner_sleep

        inner()  # LINE:park_calls_inner


def main():
    me = thread_info()
    announce_when_parked({me["ident"]: in_function("inner")}, lambda: {
        "pid": os.getpid(), "main": me, "version": platform.python_version(),
        "executable": sys.executable})
    Parker().park()  # LINE:main_calls_park


main()  # LINE:module_calls_main
