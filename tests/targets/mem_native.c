/*
 * mem_native.c — a program without Python for `pyrometer mem run`: allocates
 * 3 MiB in hold_memory() (kept until exit) and 100 x 4 KiB in churn_memory()
 * (freed again).  Built by tests/e2e/test_mem.py with -rdynamic so the
 * tracker can name its functions.
 *
 * `mem_native handoff THREADS N`: THREADS threads in a ring, each allocating
 * N blocks in handoff_alloc() and handing each to the next thread, which
 * frees it (the C library then gives the address to whichever thread asks
 * next): every block is freed by another thread than the one that made it,
 * with no lock and no Python lock between them, and prints the bytes
 * allocated.  Then 3 MiB in hold_memory() as above.
 */
#include <pthread.h>
#include <sched.h>
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

enum { MAX_THREADS = 16 };
static void *volatile g_box[MAX_THREADS];   /* each thread's mailbox */
static int g_threads;
static long g_each;
static long g_freed;                        /* blocks freed, all threads */

static void take_own(int i)
{
    void *q = __atomic_exchange_n(&g_box[i], NULL, __ATOMIC_ACQ_REL);
    if (q) {
        free(q);
        __atomic_add_fetch(&g_freed, 1, __ATOMIC_RELAXED);
    }
}

/* The size of thread i's k-th block. */
static size_t handoff_size(int i, long k)
{
    return 16 + (size_t)((k * 37 + i) % 4000);
}

__attribute__((noinline)) void *handoff_alloc(size_t n)
{
    char *p = malloc(n);
    if (p)
        p[0] = (char)n;
    return p;
}

static void *ring_thread(void *arg)
{
    int i = (int)(long)arg, next = (i + 1) % g_threads;
    for (long k = 0; k < g_each; k++) {
        void *p = handoff_alloc(handoff_size(i, k));
        void *expected = NULL;
        while (!__atomic_compare_exchange_n(&g_box[next], &expected, p, 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE)) {
            expected = NULL;
            take_own(i);   /* never all waiting on full mailboxes */
            sched_yield();
        }
        take_own(i);
    }
    while (__atomic_load_n(&g_freed, __ATOMIC_RELAXED) < g_threads * g_each)
        take_own(i);
    return NULL;
}

static int handoff(int threads, long each)
{
    pthread_t tid[MAX_THREADS];
    g_threads = threads;
    g_each = each;
    for (int i = 0; i < threads; i++)
        if (pthread_create(&tid[i], NULL, ring_thread, (void *)(long)i) != 0)
            return 1;
    for (int i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);
    long bytes = 0;
    for (int i = 0; i < threads; i++)
        for (long k = 0; k < each; k++)
            bytes += (long)handoff_size(i, k);
    printf("handed %ld blocks, %ld bytes\n", g_freed, bytes);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "handoff") == 0) {
        int threads = atoi(argv[2]);
        if (threads < 2 || threads > MAX_THREADS || handoff(threads, atol(argv[3])) != 0)
            return 2;
    }
    churn_memory();
    void *kept = hold_memory(3u << 20);
    printf("held %p\n", kept);
    return kept == NULL;
}
