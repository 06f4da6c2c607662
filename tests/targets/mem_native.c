/*
 * mem_native.c — a program without Python for `pyrometer mem run`: allocates
 * 3 MiB in hold_memory() (kept until exit) and 100 x 4 KiB in churn_memory()
 * (freed again).  Built by tests/e2e/test_mem.py with -rdynamic so the
 * tracker can name its functions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) void *hold_memory(size_t n)
{
    void *p = malloc(n);
    if (p)
        memset(p, 1, n);
    return p;
}

__attribute__((noinline)) void churn_memory(void)
{
    for (int i = 0; i < 100; i++) {
        char *volatile p = malloc(4096);
        if (p)
            p[0] = 1;
        free(p);
    }
}

int main(void)
{
    churn_memory();
    void *kept = hold_memory(3u << 20);
    printf("held %p\n", kept);
    return kept == NULL;
}
