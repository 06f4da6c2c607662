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
    mem_target.py samedepth via_a() and via_b(), alike, both call middle(),
                            which calls leaf(): 3 MiB through via_a, 5 MiB
                            through via_b, both kept over the peak (leaf's
                            and middle's frames, and their positions, are
                            the same in both calls: only via_a/via_b differ)
    mem_target.py threads   a producer thread allocates 64 x 64 KiB and hands
                            them to a consumer thread (started first), which
                            frees them and keeps 2 MiB of its own until exit
    mem_target.py small N   small_churn() makes and drops 4 N small objects in
                            batches (no free list keeps them), then small_keep()
                            keeps N of them until exit and prints "kept
                            BYTES" (their sizes and the list's, by
                            sys.getsizeof: what CPython asked its allocator
                            for)
    mem_target.py recompile N
                            recompile() compiles made() N times, each time
                            from a file of its own (gen0.py, gen1.py, ...),
                            keeps the block it makes (RECOMPILED_BLOCK + i
                            bytes) and drops the code: each code object dies
                            before the next is made, which the allocator
                            mostly puts at the same address, with its
                            bytecode at the same place

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


def leaf(n):
    return bytearray(n)  # LINE:leaf_alloc


def middle(n):
    return leaf(n)  # LINE:middle_call


def via_a(n):
    return middle(n)  # LINE:via_a_call


def via_b(n):
    return middle(n)  # LINE:via_b_call


DEEP = 150


def through_c(n, size):
    """n levels of Python frames, each called from C (map): 3.12+ keep a
    C-stack shim frame under each, so the chain has ~2n frames."""
    if n == 0:
        return leaf(size)  # LINE:through_c_leaf
    return list(map(through_c, [n - 1], [size]))[0]  # LINE:through_c_call


def deep_a(size):
    return through_c(DEEP, size)  # LINE:deep_a_call


def deep_b(size):
    return through_c(DEEP, size)  # LINE:deep_b_call


def produce(q):
    blocks = [bytearray(64 * 1024) for _ in range(64)]  # LINE:produce_alloc
    q.put(blocks)


def consume(q, ready, out):
    ready.set()
    blocks = q.get()
    out.append(sum(len(b) for b in blocks))
    del blocks[:]
    KEPT.append(bytearray(2 * MIB))  # LINE:consume_keep


class Small(object):
    __slots__ = ("a",)

    def __init__(self, a):
        self.a = a


def small_churn(n):
    # in batches: each batch's blocks are freed and the next batch's spread
    # over the same addresses (a block reused at once would hide a lost free)
    for _ in range(n // 10000):
        batch = [Small(None) for _ in range(10000)]  # LINE:small_churn_alloc
        del batch


def small_keep(n):
    kept = [Small(None) for _ in range(n)]  # LINE:small_keep_alloc
    KEPT.append(kept)
    return sys.getsizeof(kept) + sum(sys.getsizeof(o) for o in kept)


def zeroed_churn(n):
    # bytes(64) is a zeroed block: PyObject_Calloc of 97 bytes, pymalloc's
    for _ in range(n // 10000):
        batch = [bytes(64) for _ in range(10000)]  # LINE:zeroed_churn_alloc
        del batch


def zeroed_keep(n):
    kept = [bytes(64) for _ in range(n)]  # LINE:zeroed_keep_alloc
    KEPT.append(kept)
    return sys.getsizeof(kept) + sum(sys.getsizeof(o) for o in kept)


RECOMPILED_BLOCK = 100000
RECOMPILED = "def made():\n    return bytearray(%d)\n"


def recompile(n):
    for i in range(n):
        ns = {}
        exec(compile(RECOMPILED % (RECOMPILED_BLOCK + i), "gen%d.py" % i, "exec"), ns)
        made = ns.pop("made")
        KEPT.append(made())  # LINE:recompile_call
        del made, ns
    return n


def threads():
    import threading
    try:
        import queue
    except ImportError:
        import Queue as queue
    q, ready, out = queue.Queue(), threading.Event(), []
    consumer = threading.Thread(target=consume, args=(q, ready, out))
    consumer.start()
    ready.wait()
    producer = threading.Thread(target=produce, args=(q,))
    producer.start()
    producer.join()
    consumer.join()
    return out[0]


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
    elif mode == "samedepth":
        a = via_a(3 * MIB)
        b = via_b(5 * MIB)
        sys.stdout.write("held %d\n" % (len(a) + len(b)))
        del a, b
    elif mode == "deep":
        a = deep_a(3 * MIB)
        b = deep_b(5 * MIB)
        sys.stdout.write("held %d\n" % (len(a) + len(b)))
        del a, b
    elif mode == "small":
        n = int(sys.argv[2])
        small_churn(4 * n)
        sys.stdout.write("kept %d\n" % small_keep(n))
    elif mode == "zeroed":
        n = int(sys.argv[2])
        zeroed_churn(4 * n)
        sys.stdout.write("kept %d\n" % zeroed_keep(n))
    elif mode == "recompile":
        sys.stdout.write("compiled %d\n" % recompile(int(sys.argv[2])))
    elif mode == "threads":
        sys.stdout.write("moved %d\n" % threads())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
