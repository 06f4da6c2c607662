"""calibrated_target.py — known CPU shares: a loop that spins in f60 for 6 ms,
f30 for 3 ms and f10 for 1 ms (time.perf_counter), so the true leaf shares are
60 / 30 / 10 %.  Each function spins in its own body (perf_counter is a C
builtin, no Python frame), so the function is the leaf of every sample."""
import os
import time

clock = time.perf_counter


def f60():
    end = clock() + 0.006
    while clock() < end:
        pass


def f30():
    end = clock() + 0.003
    while clock() < end:
        pass


def f10():
    end = clock() + 0.001
    while clock() < end:
        pass


def main():
    while True:
        f60()
        f30()
        f10()


print("ready", os.getpid(), flush=True)
main()
