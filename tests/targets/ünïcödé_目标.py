"""
ünïcödé_目标.py — non-ASCII file, class, method and function names.

    ünïcödé_目标.py burn [SECONDS]   burn CPU in fünctiön_λ (forever by default)
    ünïcödé_目标.py park             sleep in fünctiön_λ, ready once asleep

Stack, innermost first: fünctiön_λ (LINE:uni_work or LINE:uni_sleep),
Klässe.méthode (LINE:method_calls), main (LINE:main_calls), <module>
(LINE:module_calls_main). Prints `ready {"pid"}`.
"""

import json
import os
import sys
import threading
import time

from _parked import announce_when_parked, in_function


def fünctiön_λ(park):
    if park:
        time.sleep(3600)  # LINE:uni_sleep
    total = 0
    for i in range(200000): total += i * i  # LINE:uni_work
    return total


class Klässe:
    def méthode(self, park):
        return fünctiön_λ(park)  # LINE:method_calls


def main(mode, seconds):
    if mode == "park":
        announce_when_parked({threading.get_ident(): in_function("fünctiön_λ")},
                             lambda: {"pid": os.getpid()})
    else:
        print("ready " + json.dumps({"pid": os.getpid()}), flush=True)
    deadline = time.monotonic() + seconds if seconds is not None else None
    while deadline is None or time.monotonic() < deadline:
        Klässe().méthode(mode == "park")  # LINE:main_calls


main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else None)  # LINE:module_calls_main
