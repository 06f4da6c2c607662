# -*- coding: utf-8 -*-
"""
rec20.py — recursion exactly 20 frames deep, forever.

main() calls rec(20) in a loop; rec(n) calls rec(n - 1) at LINE:rec_call until
n == 1, which does a little work at LINE:rec_work. So the deepest stack is
<module>, main, and 20 rec frames: 22 frames. Prints `ready {"pid","depth"}`.
Runs on CPython 2.7 and 3.6+.
"""

import json
import os

DEPTH = 20


def rec(n):
    if n == 1:
        total = 0
        for i in range(3000): total += i  # LINE:rec_work
        return total
    return rec(n - 1)  # LINE:rec_call


def main():
    ready = ("ready " + json.dumps({"pid": os.getpid(), "depth": DEPTH}) + "\n").encode()
    # one line: the loop's own test and jump (2.7 looks up the global True
    # each round) then share the call's line in every version; `ready` is
    # written from this line too, once, after the first rec(DEPTH), so main()
    # is on this line in every sample taken after it (os.write: a C call)
    while True: rec(DEPTH); ready = ready and os.write(1, ready) and b""  # LINE:main_calls_rec


main()  # LINE:module_calls_main
