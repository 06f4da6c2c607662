/*
 * native_probe.c — drives native unwinding + merging through the library,
 * for tests/e2e/test_native.py (built by the test against
 * build/libpyrometer.a; not part of pyrometer).
 *
 *   native_probe PID SAMPLES [--all] [--interval-ms MS] [--hold-ms MS]
 *
 * Attaches to PID (py_attach), then SAMPLES times: pauses the main thread
 * (tid == PID), copies its registers and stack, reads its Python frames
 * while it is held (so both stacks are of the same instant), resumes it,
 * unwinds and merges.  Prints one JSON object per line:
 *   {"sample": i, "pause_ns": N, "native_rc": 0|1, "frames": [
 *      {"kind": "python"|"native", "name": ..., "file": ..., "line": N}, ...]}
 *      (innermost first)
 *   {"sample": i, "error": "...", "code": N}      a torn / failed sample
 *   {"stats": {...}}                              last line
 * --all keeps the interpreter's plumbing frames (NATIVE_MERGE_ALL).
 * --hold-ms sleeps that long while the thread is held, after printing
 * {"held": i} (the SIGKILL test kills the probe right then).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "python/process.h"
#include "sample/native.h"
#include "target/unwind.h"

#define MAX_FRAMES 1024

struct held_walk {
    struct py_process *py;
    struct py_thread thread;
    struct py_frame frames[MAX_FRAMES];
    size_t depth;
    int rc;
    struct pm_error err;
    long hold_ms;
    int sample;
};

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void walk_while_held(void *ctx)
{
    struct held_walk *w = ctx;
    w->rc = py_thread_stack(w->py, &w->thread, w->frames, MAX_FRAMES, &w->depth, &w->err);
    if (w->hold_ms > 0) {
        printf("{\"held\": %d}\n", w->sample);
        fflush(stdout);
        sleep_ms(w->hold_ms);
    }
}

static void print_json_string(const char *s)
{
    putchar('"');
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int find_main_thread(struct py_process *py, pid_t pid, struct py_thread *out,
                            struct pm_error *err)
{
    struct py_thread threads[64];
    size_t count = 0;
    if (py_list_threads(py, threads, 64, &count, err) != 0)
        return -1;
    for (size_t i = 0; i < count && i < 64; i++) {
        if (threads[i].os_tid == pid) {
            *out = threads[i];
            return 0;
        }
    }
    return pm_fail(err, PM_ETORN, "main thread not in the thread list (%zu threads)", count);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: native_probe PID SAMPLES [--all] [--interval-ms MS] "
                        "[--hold-ms MS]\n");
        return 2;
    }
    pid_t pid = (pid_t)atoi(argv[1]);
    int samples = atoi(argv[2]);
    unsigned flags = 0;
    int walk_after = 0;
    long interval_ms = 5, hold_ms = 0;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--all") == 0)
            flags |= NATIVE_MERGE_ALL;
        else if (strcmp(argv[i], "--walk-after") == 0)
            walk_after = 1;
        else if (strcmp(argv[i], "--interval-ms") == 0 && i + 1 < argc)
            interval_ms = atol(argv[++i]);
        else if (strcmp(argv[i], "--hold-ms") == 0 && i + 1 < argc)
            hold_ms = atol(argv[++i]);
    }

    struct pm_error err = {0};
    struct py_process *py = NULL;
    if (py_attach(pid, &py, &err) != 0) {
        fprintf(stderr, "native_probe: attach: %s\n", err.msg);
        return 1;
    }
    struct native_unwinder *u = native_unwinder_new(pid, &err);
    if (u == NULL) {
        fprintf(stderr, "native_probe: unwinder: %s\n", err.msg);
        py_detach(py);
        return 1;
    }

    static struct held_walk walk;
    static struct native_frame native[MAX_FRAMES];
    static struct merged_frame merged[2 * MAX_FRAMES];
    uint64_t *pauses = calloc((size_t)samples + 1, sizeof *pauses);
    uint64_t *waits = calloc((size_t)samples + 1, sizeof *waits);
    size_t npauses = 0;
    int torn = 0;
    for (int s = 0; s < samples; s++) {
        if (s > 0 && interval_ms > 0)
            sleep_ms(interval_ms);
        py_begin_sample(py);
        memset(&walk.err, 0, sizeof walk.err);
        if (find_main_thread(py, pid, &walk.thread, &err) != 0) {
            printf("{\"sample\": %d, \"error\": ", s);
            print_json_string(err.msg);
            printf(", \"code\": %d}\n", err.code);
            torn++;
            continue;
        }
        walk.py = py;
        walk.hold_ms = hold_ms;
        walk.sample = s;
        walk.rc = -1;
        size_t n_native = 0;
        int nrc = native_unwind(u, pid, native, MAX_FRAMES, &n_native,
                                walk_after ? NULL : walk_while_held, &walk, &err);
        if (walk_after && nrc >= 0)
            walk_while_held(&walk);
        if (nrc < 0 || walk.rc < 0) {
            printf("{\"sample\": %d, \"error\": ", s);
            print_json_string(nrc < 0 ? err.msg : walk.err.msg);
            printf(", \"code\": %d}\n", nrc < 0 ? err.code : walk.err.code);
            torn++;
            continue;
        }
        struct native_unwind_stats st = native_unwinder_stats(u);
        waits[npauses] = st.stop_wait_ns_last;
        pauses[npauses++] = st.pause_ns_last;
        size_t n_merged = 0;
        if (native_merge(native, n_native, walk.frames, walk.depth,
                         flags | (nrc == 1 ? NATIVE_MERGE_PARTIAL : 0), merged,
                         2 * MAX_FRAMES, &n_merged, &err) < 0) {
            printf("{\"sample\": %d, \"error\": ", s);
            print_json_string(err.msg);
            printf(", \"code\": %d, \"native\": [", err.code);
            for (size_t i = 0; i < n_native; i++) {
                if (i)
                    printf(", ");
                print_json_string(native[i].name ? native[i].name : "?");
            }
            printf("], \"python\": %zu}\n", walk.depth);
            torn++;
            continue;
        }
        printf("{\"sample\": %d, \"pause_ns\": %llu, \"native_rc\": %d, \"frames\": [", s,
               (unsigned long long)st.pause_ns_last, nrc);
        for (size_t i = 0; i < n_merged; i++) {
            printf("%s{\"kind\": \"%s\", \"name\": ", i ? ", " : "",
                   merged[i].kind == MERGED_PYTHON ? "python" : "native");
            print_json_string(merged[i].name);
            printf(", \"file\": ");
            print_json_string(merged[i].filename);
            printf(", \"line\": %d}", merged[i].line);
        }
        printf("]}\n");
        fflush(stdout);
    }
    struct native_unwind_stats st = native_unwinder_stats(u);
    qsort(pauses, npauses, sizeof *pauses, cmp_u64);
    qsort(waits, npauses, sizeof *waits, cmp_u64);
    printf("{\"stats\": {\"unwinds\": %llu, \"torn\": %d, \"median_pause_ns\": %llu, "
           "\"median_stop_wait_ns\": %llu, "
           "\"max_pause_ns\": %llu, \"stack_copy_size\": %llu, \"live_reads\": %llu, "
           "\"stop_timeouts\": %llu}}\n",
           (unsigned long long)st.unwinds, torn,
           (unsigned long long)(npauses ? pauses[npauses / 2] : 0),
           (unsigned long long)(npauses ? waits[npauses / 2] : 0),
           (unsigned long long)st.pause_ns_max, (unsigned long long)st.stack_copy_size,
           (unsigned long long)st.live_reads, (unsigned long long)st.stop_timeouts);
    free(pauses);
    free(waits);
    native_unwinder_free(u);
    py_detach(py);
    return 0;
}
