# -*- coding: utf-8 -*-
"""
native_calls.py — a main thread that spends its time inside C functions,
for the native-unwinding tests (test_native.py).

    native_calls.py --mode spin --ext-dir DIR   loop: call_c() -> native_ext.spin()
    native_calls.py --mode zlib                 loop: compress_data() -> zlib.compress()

native_ext is the extension built from tests/targets/native_ext.c into DIR.
Prints `ready {"pid"}` before the loop; runs until killed, printing nothing
more (a `tick` file, when given, is rewritten after each call so tests can
see the thread keeps running).  Runs on CPython 2.7 and 3.6+.
"""

from __future__ import print_function

import argparse
import json
import os
import sys
import zlib

parser = argparse.ArgumentParser()
parser.add_argument("--mode", choices=("spin", "zlib"), required=True)
parser.add_argument("--ext-dir")
parser.add_argument("--tick")
args = parser.parse_args()

if args.ext_dir:
    sys.path.insert(0, args.ext_dir)
    import native_ext

# compressible but not trivially so: deflate level 9 works hard on it
DATA = b"".join(b"%d:%x " % (i, i * 2654435761 % 4093) for i in range(300000))


def call_c():
    return native_ext.spin(20000000)  # LINE:call_c_spin


def compress_data():
    return zlib.compress(DATA, 9)  # LINE:compress_call


def tick(count):
    if args.tick:
        with open(args.tick + ".tmp", "w") as f:
            f.write(str(count))
        os.rename(args.tick + ".tmp", args.tick)


def main():
    work = call_c if args.mode == "spin" else compress_data
    print("ready " + json.dumps({"pid": os.getpid()}))
    sys.stdout.flush()
    count = 0
    while True:
        work()  # LINE:main_calls_work
        count += 1
        tick(count)


main()  # LINE:module_calls_main
