# -*- coding: utf-8 -*-
"""
mem_target.py — allocates known sizes from known functions, for `pyrometer mem`.

    mem_target.py peak      grow() builds a 10 MiB list and keeps it over the
                            peak; churn() allocates 1000 x 1 KiB bytes objects
                            and frees them again before grow() runs
    mem_target.py leak N    leaky() keeps N bytes (64 KiB bytes objects) in a
                            module-level list until exit; churn() as above
    mem_target.py park      grow(), then print "ready" and wait on stdin (the
                            test kills it with SIGKILL while it waits)
    mem_target.py fork      grow() in the parent; the child runs child_alloc()
                            (4 MiB), both print their pid and exit normally

Sizes are exact: a list of 10 MiB / 8 items has a 10 MiB item array; bytes
objects of 1 KiB and 64 KiB hold a known payload (plus a small header).
Lines worth asserting carry `# LINE:tag` markers.  Runs on Python 2.7 too.
"""
import itertools
import os
import sys

MIB = 1024 * 1024
KEPT = []


def churn(size=1024):
    # no new ints (2.7 keeps int blocks for ever) and no constant folding
    blocks = []
    for _ in itertools.repeat(None, 1000):
        blocks.append(b"x" * size)  # LINE:churn_alloc
    del blocks[:]
    return 0


def grow():
    return [None] * (10 * MIB // 8)  # LINE:grow_alloc


def leaky(total):
    for _ in range(total // (64 * 1024)):
        KEPT.append(b"y" * (64 * 1024 - 1) + b"z")  # LINE:leaky_alloc


def child_alloc():
    return [None] * (4 * MIB // 8)  # LINE:child_alloc


def main():
    mode = sys.argv[1]
    if mode == "peak":
        churn()
        data = grow()  # LINE:main_grow
        sys.stdout.write("held %d\n" % len(data))
        del data
    elif mode == "leak":
        churn()
        leaky(int(sys.argv[2]))
    elif mode == "park":
        data = grow()
        sys.stdout.write("ready %d\n" % os.getpid())
        sys.stdout.flush()
        sys.stdin.readline()
        del data
    elif mode == "fork":
        data = grow()
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            kept = child_alloc()
            sys.stdout.write("child %d %d\n" % (os.getpid(), len(kept)))
            sys.stdout.flush()
            os._exit(0)
        os.waitpid(pid, 0)
        sys.stdout.write("parent %d %d\n" % (os.getpid(), len(data)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
