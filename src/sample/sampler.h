/*
 * sampler.h — taking samples of a Python process.
 *
 * Owns: one "sample" (every thread with its state and its frames, innermost
 * first, retried when a read was torn), and the sampling loop (absolute
 * deadlines at the asked rate, stop on a flag, a duration, or the target's
 * exit, a progress line on a terminal).  Knows nothing of output formats:
 * each sample goes to a callback.  Never prints except the progress line.
 */
#ifndef PYROMETER_SAMPLER_H
#define PYROMETER_SAMPLER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../common/error.h"
#include "../python/process.h"

#define SAMPLE_MAX_DEPTH 2048u
#define SAMPLE_MAX_THREADS 1024u

enum sampled_frame_kind { SAMPLED_PYTHON = 0, SAMPLED_NATIVE = 1 };

struct sampled_frame {
    const char *name;
    const char *filename;
    const char *short_filename;
    int line;              /* -1 when unknown */
    int firstlineno;       /* the function's first line */
    int kind;              /* enum sampled_frame_kind */
    uint64_t frame_addr;   /* Python frames: the frame in the target */
    const struct py_code *code;   /* Python frames: its code (valid for this sample) */
};

struct sampled_thread {
    pid_t pid;             /* the process the thread belongs to */
    const char *name;      /* threading's name, NULL when unknown */
    uint64_t thread_id;
    pid_t os_tid;
    char state;            /* /proc state letter, 0 if unknown */
    int active;            /* running on a CPU (or unknown) */
    int owns_gil;
    int truncated;         /* deeper than SAMPLE_MAX_DEPTH: outermost frames lost */
    size_t depth;
    struct sampled_frame *frames;   /* innermost first */
};

struct sample {
    struct py_process *py; /* the process sampled */
    uint64_t t_ns;         /* since the loop started */
    size_t nthreads;
    struct sampled_thread *threads;
    size_t torn_threads;   /* threads dropped from this sample as unreadable */
};

struct sampler;

struct sampler *sampler_new(struct py_process *py);
void sampler_free(struct sampler *s);
/* -n: unwind each thread's C stack too (pausing the thread only while it is
 * copied) and merge it with the Python frames; threads that are not running
 * are unwound only with include_idle. */
int sampler_enable_native(struct sampler *s, int include_idle, struct pm_error *err);

/* Take one sample now (all threads, idle ones included; the caller filters).
 * The sample is valid until the next call.  Fails only when the thread list
 * itself cannot be read after retries (PM_ETORN) or the target is gone
 * (PM_EGONE). */
int sampler_take(struct sampler *s, const struct sample **out, struct pm_error *err);

/* Like sampler_take, with every thread of the process stopped (ptrace) for
 * the duration of the sample, and resumed before returning, whatever
 * happened.  Thread states are read before the pause. */
struct pause_set;
int sampler_take_paused(struct sampler *s, struct pause_set *ps, const struct sample **out,
                        struct pm_error *err);

/* What sampling costs us, measured when asked (PYROMETER_STATS): the CPU
 * time (this thread's, CLOCK_THREAD_CPUTIME_ID) of each tick's work — the
 * reads, the walk and the callback's aggregation, not the sleep — in
 * 0.1 µs buckets, and the system calls the reads made. */
#define SAMPLER_COST_BUCKETS 4000u   /* 0.1 µs each: up to 400 µs, then the last */
struct sampler_costs {
    uint64_t ticks;
    uint64_t total_ns, max_ns;
    uint64_t syscalls;           /* memory reads and /proc reads, all members */
    uint32_t hist[SAMPLER_COST_BUCKETS];
};
/* The q-th percentile (0..100) of the per-tick cost, in µs. */
double sampler_costs_percentile(const struct sampler_costs *c, double q);

struct sampler_config {
    double rate_hz;              /* > 0 */
    double duration_s;           /* 0 = until stop / exit */
    volatile sig_atomic_t *stop; /* set by a signal handler */
    pid_t child;                 /* launch mode: our child, reaped when it exits */
    int progress;                /* draw a progress line on stderr */
    struct sampler_costs *costs; /* NULL: not measured */
    /* called with the loop's ctx just before each process is sampled, so
     * that state read beside the stacks can bracket them (NULL: none) */
    void (*before_take)(pid_t pid, void *ctx);
};

struct sampler_result {
    uint64_t ticks;              /* samples attempted */
    uint64_t samples;            /* samples taken */
    uint64_t errors;             /* samples lost entirely + threads dropped */
    uint64_t thread_samples;     /* thread stacks read successfully */
    uint64_t late;               /* samples taken more than one interval late */
    uint64_t elapsed_ns;
    int target_exited;
    int child_status_valid;
    int child_status;            /* waitpid status, launch mode */
    int stopped_by_signal;
};

typedef int (*sample_fn)(const struct sample *smp, void *ctx);

/* Run the loop; each sample goes to fn (a non-zero return stops the loop).
 * Returns 0 when stopped normally (duration, signal, target exit). */
int sampler_run(struct sampler *s, const struct sampler_config *cfg, sample_fn fn, void *ctx,
                struct sampler_result *res, struct pm_error *err);

/* A group: the root process (its sampler borrowed, or NULL when the root is
 * not Python) and, with follow, every descendant running Python, attached
 * as it appears (checked every 100 ms) and dropped when it exits.  Each
 * member's samples go to the callback separately (sampled_thread.pid says
 * whose).  The loop ends when the root exits. */
struct sampler_group;
struct sampler_group *sampler_group_new(pid_t root, struct sampler *root_sampler, int follow);
void sampler_group_free(struct sampler_group *g);
int sampler_group_run(struct sampler_group *g, const struct sampler_config *cfg, sample_fn fn,
                      void *ctx, struct sampler_result *res, struct pm_error *err);
/* --blocking: pause each process for every sample. */
void sampler_group_set_blocking(struct sampler_group *g, int blocking);
/* -n for the processes the group attaches itself (children); the caller
 * enables the root's sampler (sampler_enable_native). */
void sampler_group_set_native(struct sampler_group *g, int native, int include_idle);
/* One sample of every member now (dump -s); finds descendants first. */
int sampler_group_snapshot(struct sampler_group *g, sample_fn fn, void *ctx,
                           struct pm_error *err);
/* Python processes currently sampled. */
size_t sampler_group_size(const struct sampler_group *g);

#endif
