/*
 * fake_python.c — a process that looks like a CPython of a version pyrometer
 * does not support, for the "unsupported version" error test.
 *
 * It exports Py_Version (as CPython 3.11+ does) and an all-zero _PyRuntime,
 * both in .dynsym when linked with -rdynamic. Build it named like an
 * interpreter, e.g.:
 *   gcc -O0 -rdynamic -DFAKE_PY_VERSION=0x030F00F0 -o python3.15 fake_python.c
 * Prints "ready" and sleeps until killed. Never used by pyrometer itself.
 */
#include <stdio.h>
#include <unistd.h>

#ifndef FAKE_PY_VERSION
#define FAKE_PY_VERSION 0x030F00F0UL /* 3.15.0 final */
#endif

__attribute__((used)) const unsigned long Py_Version = FAKE_PY_VERSION;
__attribute__((used)) char _PyRuntime[65536];

int main(void)
{
    printf("ready\n");
    fflush(stdout);
    for (;;)
        pause();
    return 0;
}
