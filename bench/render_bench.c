/*
 * render_bench.c — how long the flame graph SVG takes for a big profile:
 * 100 000 distinct stacks (depth 8..40 over 4 000 functions, 4 threads),
 * rendered as a flame graph (and, for comparison, collapsed stacks and
 * speedscope JSON).  Prints the seconds taken and the file sizes.  Not part
 * of the build; never fails a build.
 *
 * Build (after make; bench/run.py does this):
 *        gcc -std=gnu11 -O2 -D_GNU_SOURCE -Isrc -o build/render_bench bench/render_bench.c
 *          build/libpyrometer.a $(pkg-config --libs libelf jansson zlib ncursesw
 *          libunwind-ptrace libunwind-generic) -lm
 * Run:   build/render_bench [OUTPUT.svg]   (default /tmp/render_bench.svg; the other
 *        formats go to /tmp/render_bench.txt and /tmp/render_bench.speedscope.json)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include "render/render.h"

enum { NSTACKS = 100000, NFUNCS = 4000, NTHREADS = 4, MIN_DEPTH = 8, MAX_DEPTH = 40 };

static uint64_t xorshift(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Stacks share prefixes the way real programs do: each new stack copies a
 * random-length prefix of the previous one and adds random frames. */
static struct profile *build_profile(void)
{
    struct profile *p = profile_new();
    if (p == NULL)
        return NULL;
    p->meta.rate_hz = 100;
    p->meta.duration_ns = 600ULL * 1000000000ULL;
    snprintf(p->meta.program, sizeof p->meta.program, "render_bench synthetic profile");
    snprintf(p->meta.python_version, sizeof p->meta.python_version, "3.12.1");

    static uint32_t funcs[NFUNCS];
    for (int i = 0; i < NFUNCS; i++) {
        char name[64], file[64];
        snprintf(name, sizeof name, "module_%d.Class.method_%d", i % 97, i);
        snprintf(file, sizeof file, "/srv/app/pkg/module_%d.py", i % 97);
        funcs[i] = profile_frame(p, name, file, file + 9, 10 + i % 500,
                                 i % 10 == 0 ? PROFILE_FRAME_NATIVE : PROFILE_FRAME_PYTHON);
    }
    uint32_t threads[NTHREADS];
    for (int t = 0; t < NTHREADS; t++)
        threads[t] = profile_thread(p, 1, (uint64_t)t + 1, 1000 + (uint64_t)t, NULL);

    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    uint32_t stack[MAX_DEPTH] = { 0 };
    uint32_t depth = 0;
    while (p->nstacks < NSTACKS) {
        uint32_t keep = depth ? (uint32_t)(xorshift(&rng) % depth) : 0;
        depth = MIN_DEPTH + (uint32_t)(xorshift(&rng) % (MAX_DEPTH - MIN_DEPTH + 1));
        if (keep > depth)
            keep = depth;
        for (uint32_t d = keep; d < depth; d++)
            stack[d] = funcs[xorshift(&rng) % NFUNCS];
        uint64_t count = 1 + xorshift(&rng) % 50;
        uint32_t thread = threads[xorshift(&rng) % NTHREADS];
        if (profile_add(p, thread, stack, depth, count, p->nstacks * 10000000ULL) == UINT32_MAX) {
            profile_free(p);
            return NULL;
        }
    }
    return p;
}

/* Render `p` with `render` into `path`; prints the time and size.  0 or -1. */
static int time_render(const char *what, const struct profile *p, const char *path,
                       int (*render)(const struct profile *, const struct render_opts *,
                                     FILE *, struct pm_error *))
{
    FILE *out = fopen(path, "w");
    if (out == NULL) {
        perror(path);
        return -1;
    }
    struct render_opts opts = { 0 };
    struct pm_error err = { 0 };
    double start = seconds_now();
    int rc = render(p, &opts, out, &err);
    double seconds = seconds_now() - start;
    fclose(out);
    if (rc != 0) {
        fprintf(stderr, "render_bench: %s: %s\n", what, err.msg);
        return -1;
    }
    struct stat st;
    if (stat(path, &st) != 0)
        st.st_size = 0;
    printf("%-10s %.3f s  %7.1f MB  %s\n", what, seconds, (double)st.st_size / 1e6, path);
    return 0;
}

int main(int argc, char **argv)
{
    const char *svg_path = argc > 1 ? argv[1] : "/tmp/render_bench.svg";
    double t0 = seconds_now();
    struct profile *p = build_profile();
    if (p == NULL) {
        fprintf(stderr, "render_bench: out of memory building the profile\n");
        return 1;
    }
    printf("profile:   %u stacks, %u frames, %zu pooled frame ids, %zu runs, built in %.3f s\n",
           p->nstacks, p->nframes, p->pool_len, p->nruns, seconds_now() - t0);
    int rc = time_render("flamegraph", p, svg_path, render_flamegraph);
    if (rc == 0)
        rc = time_render("collapsed", p, "/tmp/render_bench.txt", render_collapsed);
    if (rc == 0)
        rc = time_render("speedscope", p, "/tmp/render_bench.speedscope.json",
                         render_speedscope);
    profile_free(p);
    return rc == 0 ? 0 : 1;
}
