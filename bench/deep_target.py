"""deep_target.py — one thread, always on CPU, a steady stack 300 frames deep."""
import os
import sys

sys.setrecursionlimit(2000)


def recurse(n):
    if n == 0:
        total = 0
        while True:
            for i in range(10000):
                total += i
    return recurse(n - 1)


print("ready", os.getpid(), flush=True)
recurse(298)  # <module> + 299 recurse frames = 300 frames
