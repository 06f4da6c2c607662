/*
 * wake_floor.c — what the machine charges before any sampler logic runs:
 *
 *   wake_floor RATE_HZ SECONDS
 *
 * A loop that sleeps to absolute deadlines at RATE_HZ (clock_nanosleep,
 * TIMER_ABSTIME, the sampler's timer slack) and, at each wake-up, makes one
 * process_vm_readv of a sleeping child shaped like one of pyrometer's
 * samples on 3.11+ (four ranges: 12 B, 312 B, 3.5 KiB, 80 B).  Prints
 *
 *   RATE cpu_s wakeups us_per_wake read_us_median read_us_p99
 *
 * us_per_wake is all the CPU the process was charged per wake-up (sleep,
 * wake and the read); read_us_* is the read alone (this thread's CPU clock
 * around it).  bench/run.py prints both next to pyrometer's own figures,
 * which cannot be lower.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double thread_cpu_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 1;
    double rate = atof(argv[1]), seconds = atof(argv[2]);
    if (rate <= 0 || seconds <= 0)
        return 1;
    static char remote[4][8192], local[4][8192];
    memset(remote, 1, sizeof remote);
    pid_t child = fork();
    if (child == 0) {
        pause();
        _exit(0);
    }
    const size_t sizes[4] = {12, 312, 3600, 80};
    struct iovec lv[4], rv[4];
    for (int i = 0; i < 4; i++) {
        lv[i] = (struct iovec){local[i], sizes[i]};
        rv[i] = (struct iovec){remote[i], sizes[i]};
    }
    prctl(PR_SET_TIMERSLACK, 10000UL, 0, 0, 0);
    long period = (long)(1e9 / rate);
    long n = (long)(rate * seconds);
    double *reads = malloc((size_t)n * sizeof *reads);
    if (reads == NULL)
        return 1;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    for (long i = 0; i < n; i++) {
        t.tv_nsec += period;
        while (t.tv_nsec >= 1000000000L) {
            t.tv_nsec -= 1000000000L;
            t.tv_sec++;
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);
        double t0 = thread_cpu_us();
        process_vm_readv(child, lv, 4, rv, 4, 0);
        reads[i] = thread_cpu_us() - t0;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    qsort(reads, (size_t)n, sizeof *reads, by_value);
    printf("%g %.6f %ld %.3f %.2f %.2f\n", rate, cpu, n, 1e6 * cpu / (double)n, reads[n / 2],
           reads[(long)((double)n * 0.99)]);
    free(reads);
    return 0;
}
