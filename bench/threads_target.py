"""threads_target.py — 8 threads, each alternating ~4 ms of CPU and ~4 ms of sleep,
a stack about 10 frames deep; the main thread waits.  Prints "ready PID"."""
import os
import threading
import time


def spin(seconds):
    end = time.perf_counter() + seconds
    total = 0
    while time.perf_counter() < end:
        for i in range(200):
            total += i
    return total


def nest(n, k):
    if n == 0:
        while True:
            spin(0.004 + 0.0002 * k)
            time.sleep(0.004)
    return nest(n - 1, k)


for k in range(8):
    threading.Thread(target=nest, args=(8, k), name="worker-%d" % k, daemon=True).start()
print("ready", os.getpid(), flush=True)
while True:
    time.sleep(1)
