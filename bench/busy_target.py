"""busy_target.py — one thread, always on CPU, a steady stack 20 frames deep."""
import os


def level(n):
    if n == 0:
        total = 0
        while True:
            for i in range(10000):
                total += i
    return level(n - 1)


print("ready", os.getpid(), flush=True)
level(18)  # <module> + 19 level frames = 20 frames
