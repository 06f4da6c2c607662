"""stacks_target.py — 10 000 distinct stacks, visited in turn, for the memory
figure: k = 0..9999 written in base 4 picks, level by level, which of a, b,
c, d calls the next (7 levels below run()), and the leaf spins ~50 us."""
import os
import time

DIGITS = 7


def leaf():
    end = time.perf_counter() + 5e-5
    while time.perf_counter() < end:
        pass


def a(k, i):
    return leaf() if i == DIGITS else FUNCS[(k >> (2 * i)) & 3](k, i + 1)


def b(k, i):
    return leaf() if i == DIGITS else FUNCS[(k >> (2 * i)) & 3](k, i + 1)


def c(k, i):
    return leaf() if i == DIGITS else FUNCS[(k >> (2 * i)) & 3](k, i + 1)


def d(k, i):
    return leaf() if i == DIGITS else FUNCS[(k >> (2 * i)) & 3](k, i + 1)


FUNCS = (a, b, c, d)


def run():
    while True:
        for k in range(10000):
            FUNCS[k & 3](k, 1)


print("ready", os.getpid(), flush=True)
run()
