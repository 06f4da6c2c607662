# -*- coding: utf-8 -*-
"""
multiline.py — three threads parked in calls that sit inside multi-line
expressions, each reporting the interpreter's own idea of every frame's line.

Thread "args"  : call_args(), park() is one argument of a call spanning lines.
Thread "binop" : binop(), park() is one operand of a `+` chain spanning lines.
Main thread    : chain(), park() runs inside a method chain spanning lines.
park() captures, before sleeping at LINE:park_sleep, the stack above it:
[[qualname, basename(co_filename), f_lineno], ...] innermost first (qualname is
co_qualname where the interpreter has it, else co_name). Prints `ready
{"pid", "threads": {tag: {"native_id", "stack"}}}` once all three sleep.
Runs on CPython 2.7 and 3.6+.
"""

import os
import sys
import time

from _parked import announce_when_parked, current_native_id, get_ident, in_function, start_daemon

REPORT = {}


def park(tag):
    frame = sys._getframe(1)
    stack = []
    while frame is not None:
        code = frame.f_code
        stack.append([getattr(code, "co_qualname", code.co_name),
                      os.path.basename(code.co_filename), frame.f_lineno])
        frame = frame.f_back
    REPORT[tag] = {"native_id": current_native_id(), "stack": stack}
    time.sleep(3600)  # LINE:park_sleep
    return 0


def combine(*values):
    return sum(values)


def call_args():
    total = combine(
        1,
        park("args"),
        3,
    )
    return total


def binop():
    value = (1 +
             2 +
             park("binop") +
             4)
    return value


class Chain(object):
    def step(self):
        return self

    def park_step(self):
        park("chain")
        return self


def chain():
    return (Chain()
            .step()
            .park_step()
            .step())


def main():
    threads = [start_daemon(call_args, "args"), start_daemon(binop, "binop")]
    checks = dict((t.ident, in_function("park")) for t in threads)
    checks[get_ident()] = in_function("park")
    announce_when_parked(checks, lambda: {"pid": os.getpid(), "threads": REPORT})
    chain()


main()
