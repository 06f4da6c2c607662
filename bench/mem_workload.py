"""
mem_workload.py — an allocation-heavy Python workload for bench/mem_bench.py.

Builds and drops many small containers and strings (dicts, lists, tuples,
str formatting, bytes) like a request handler or a parser would, and at a
known moment holds one big block: PEAK_MIB MiB as a bytearray inside
hold_peak(), so the true peak is known (the rest of the live heap at that
moment is small and measured by the bench with tracemalloc as a check).
Prints "done SECONDS TOTAL cpu SECONDS": the work loop's wall time, a check
value, and the loop's CPU time (steadier than wall time on a shared machine).
`mem_workload.py ROUNDS --depth N` does the same work N calls deeper (a
service's handlers run under tens of frames of server, framework and
middleware): a tracker that walks the stack at each allocation pays for
those frames, one that keeps its own stack does not.

`mem_workload.py --construction` prints instead what main() holds at its
peak, by construction: the bytes of every object one round's rows are made
of (sys.getsizeof is the size CPython asks its allocator for: object, GC
header, item arrays, dict key tables), each counted once, without the
objects every round shares (small ints, the dict keys: constants), plus the
held bytearray.  Rounds are alike, so one round measured in a plain run
stands for the peak round under a profiler.
"""
import sys
import time

PEAK_MIB = 64


def records(n):
    out = []
    for i in range(n):
        out.append({"id": i, "name": "item-%d" % i, "tags": [i, i + 1, i + 2],
                    "pos": (i * 0.5, i * 1.5)})
    return out


def transform(rows):
    total = 0
    for row in rows:
        s = "%s:%s" % (row["name"], ",".join(str(t) for t in row["tags"]))
        total += len(s.encode())
    return total


def hold_peak():
    block = bytearray(PEAK_MIB * 1024 * 1024)
    return len(block)


def construction():
    rows = records(5000)
    seen, total, todo = set(), 0, [rows]
    while todo:
        o = todo.pop()
        if id(o) in seen or (type(o) is int and -5 <= o <= 256):
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        if isinstance(o, dict):
            todo.extend(o.values())
        elif isinstance(o, (list, tuple)):
            todo.extend(o)
    block = bytearray(PEAK_MIB * 1024 * 1024)
    return total + sys.getsizeof(block)


def nested(depth, fn, arg):
    if depth == 0:
        return fn(arg)
    return nested(depth - 1, fn, arg)


def main():
    if sys.argv[1:] == ["--construction"]:
        sys.stdout.write("construction %d\n" % construction())
        return
    args = sys.argv[1:]
    depth = 0
    if "--depth" in args:
        i = args.index("--depth")
        depth = int(args[i + 1])
        del args[i:i + 2]
    rounds = int(args[0]) if args else 30
    t0, c0 = time.time(), time.process_time()
    total = 0
    for r in range(rounds):
        rows = nested(depth, records, 5000)
        total += nested(depth, transform, rows)
        if r == rounds // 2:
            total += hold_peak()
        del rows
    sys.stdout.write("done %.4f %d cpu %.4f\n" % (time.time() - t0, total, time.process_time() - c0))


if __name__ == "__main__":
    main()
