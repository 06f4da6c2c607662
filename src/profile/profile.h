/*
 * profile.h — the aggregated profile: interned strings and frames, a stack
 * table with counts per thread, a run-length timeline of samples, and the
 * run's metadata.  This is the only thing renderers see.
 *
 * Owns: memory for everything it holds (profile_free releases all).  Never
 * reads process memory, never prints, never does file I/O.
 *
 * Conventions:
 *   - ids are indexes into the arrays below (uint32_t), stable for the
 *     profile's life;
 *   - a stack's frames are stored ROOT FIRST (frames[0] is the outermost
 *     call, frames[depth-1] the leaf);
 *   - a frame's `line` is 0 when unknown or when line numbers are off.
 */
#ifndef PYROMETER_PROFILE_H
#define PYROMETER_PROFILE_H

#include <stddef.h>
#include <stdint.h>

struct profile_frame {
    uint32_t name;        /* string id: function (qualified where known) */
    uint32_t filename;    /* string id: full path as the interpreter has it */
    uint32_t short_file;  /* string id: path below the package root */
    int32_t line;         /* 0 = unknown / not recorded */
    uint32_t kind;        /* PROFILE_FRAME_* */
};

enum {
    PROFILE_FRAME_PYTHON = 0,
    PROFILE_FRAME_NATIVE = 1,  /* C frame (issue 3) */
    PROFILE_FRAME_SYNTH = 2,   /* synthetic root: thread or process label */
};

struct profile_thread {
    uint64_t thread_id;     /* interpreter's id (pthread_t) */
    uint64_t os_thread_id;  /* kernel TID, 0 if unknown */
    uint32_t name;          /* string id ("" when unknown) */
    uint32_t pid;
    uint64_t samples;       /* samples that included this thread */
};

struct profile_stack {
    uint32_t thread;        /* index into threads */
    uint32_t depth;
    uint32_t first;         /* index into frame_pool: frames root first */
    uint64_t count;
};

/* One timeline run: `count` consecutive samples of `thread` that all had
 * stack `stack`, the first taken at `start_ns` and the last at `end_ns`
 * (nanoseconds since profile start). */
struct profile_run {
    uint32_t thread;
    uint32_t stack;
    uint64_t start_ns;
    uint64_t end_ns;
    uint64_t count;
};

struct profile_meta {
    int pid;
    double rate_hz;            /* asked rate */
    uint64_t duration_ns;      /* wall time sampled */
    uint64_t samples;          /* sampling ticks taken */
    uint64_t errors;           /* ticks (or thread samples) discarded as torn */
    uint64_t start_unix_ns;    /* wall-clock start */
    char python_version[32];   /* "3.12.1" */
    char program[256];         /* command line or exe, for titles */
};

struct profile {
    struct profile_meta meta;

    /* strings (id 0 is always "") */
    char **strings;
    uint32_t nstrings, strings_cap;

    struct profile_frame *frames;
    uint32_t nframes, frames_cap;

    struct profile_thread *threads;
    uint32_t nthreads, threads_cap;

    struct profile_stack *stacks;
    uint32_t nstacks, stacks_cap;
    uint32_t *frame_pool;
    size_t pool_len, pool_cap;

    struct profile_run *runs;
    size_t nruns, runs_cap;
    /* set before adding samples when no output will read the timeline
     * (flame graph, collapsed, pprof, pstats): runs then stay empty, and a
     * long profile costs memory per distinct stack only */
    int no_timeline;

    /* private hash tables */
    struct profile_hash *string_index, *frame_index, *stack_index;
    struct profile_hash *thread_index;
    /* private: per thread (capacity threads_cap), 1 + index into runs of the
     * thread's last run, 0 when it has none yet */
    size_t *thread_last_run;
};

struct profile *profile_new(void);
void profile_free(struct profile *p);

/* Intern; returns the id, or UINT32_MAX when out of memory. */
uint32_t profile_string(struct profile *p, const char *s);
uint32_t profile_frame(struct profile *p, const char *name, const char *filename,
                       const char *short_file, int line, uint32_t kind);
/* Find or add the thread with this (pid, thread_id); updates name/os id if
 * given (name may be NULL). */
uint32_t profile_thread(struct profile *p, uint32_t pid, uint64_t thread_id,
                        uint64_t os_thread_id, const char *name);

/* Add `count` samples of stack `frames` (ids, ROOT FIRST, `depth` of them)
 * on `thread` at time `t_ns` (since start).  Extends the timeline run when the
 * thread's last run has the same stack.  Returns the stack id or UINT32_MAX. */
uint32_t profile_add(struct profile *p, uint32_t thread, const uint32_t *frames,
                     uint32_t depth, uint64_t count, uint64_t t_ns);

/* Convenience accessors for renderers. */
static inline const char *profile_str(const struct profile *p, uint32_t id)
{
    return id < p->nstrings ? p->strings[id] : "";
}
static inline const uint32_t *profile_stack_frames(const struct profile *p,
                                                   const struct profile_stack *s)
{
    return p->frame_pool + s->first;
}
/* Total samples over all stacks. */
uint64_t profile_total(const struct profile *p);

/* Format a frame label "function (short_file:line)" — or without ":line" when
 * line is 0, or with the full filename when full_filenames — into buf. */
void profile_frame_label(const struct profile *p, uint32_t frame, int full_filenames,
                         char *buf, size_t cap);

#endif
