/*
 * replay.h — replaying a memory capture: which blocks were live when, and by
 * which stack they were allocated.
 *
 * Owns: the tables a capture defines (strings, code objects, frames with
 * their line numbers, the stack trie), the live-block map while replaying,
 * and per-stack totals for the report views:
 *   allocs  — bytes and count allocated, over the whole run;
 *   peak    — what was live at the high-water mark of live tracked bytes
 *             (the first moment it was reached; found by a first pass, taken
 *             by a second);
 *   leaks   — what was live when the interpreter began to shut down (the
 *             FINALIZING record), or at the end of the capture when there is
 *             none (non-Python programs, killed targets);
 * and a time series (heap, RSS) for the temporal view.  Never prints; the
 * progress callback lets a command show progress.
 */
#ifndef PYROMETER_REPLAY_H
#define PYROMETER_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"
#include "capture.h"

enum replay_frame_kind { REPLAY_PYTHON = 0, REPLAY_NATIVE = 1 };

struct replay_frame {
    enum replay_frame_kind kind;
    const char *name;        /* function (qualified where the version has it) or C symbol */
    const char *filename;    /* Python file, or the library of a C frame */
    int line;                /* 0 when unknown (C frames) */
};

struct replay_stack {
    uint32_t parent;         /* stack id, 0 = root */
    uint32_t frame;          /* frame id (index into frames, from 1) */
    uint32_t depth;
};

/* Per-stack figures (the stack's own, not including deeper stacks). */
struct replay_totals {
    uint64_t alloc_bytes, alloc_count;
    uint64_t peak_bytes, peak_count;
    uint64_t leak_bytes, leak_count;
};

struct replay_point {
    uint64_t t_ns;           /* since the start */
    uint64_t heap;           /* live tracked bytes at this point */
    uint64_t heap_max;       /* highest live bytes since the previous point */
    uint64_t rss;            /* resident set size, 0 when unknown */
};

struct replay {
    /* what the capture says about itself */
    uint32_t flags;
    int pid;
    char python[32];         /* "" for a program without Python */
    char command[1024];
    char exe[1024];
    uint64_t sample_bytes;
    uint64_t start_unix_ns;
    char notes[4][256];
    int nnotes;
    int ended;               /* END record seen: the program exited normally */
    int finalizing;          /* FINALIZING record seen */
    int truncated;
    char truncated_why[160];

    /* tables (index 0 unused) */
    struct replay_frame *frames;
    uint32_t nframes;
    struct replay_stack *stacks;
    uint32_t nstacks;
    struct replay_totals *totals;   /* per stack id, 0 = no stack */

    /* results */
    uint64_t events, alloc_events, free_events;
    uint64_t total_allocated;
    uint64_t peak_bytes;            /* the high-water mark of live tracked bytes */
    uint64_t peak_t_ns;
    uint64_t leak_bytes;            /* live at shutdown (or the end) */
    uint64_t end_bytes;             /* live at the end of the capture */
    uint64_t duration_ns;
    uint64_t max_rss;
    uint64_t threads;
    uint64_t capture_bytes;         /* size of the file */
    struct replay_point *points;
    size_t npoints;

    /* private */
    struct replay_private *priv;
};

/* Progress: called now and then with the fraction done (0..1) of the pass,
 * and the pass number (1 or 2). */
typedef void (*replay_progress_fn)(double fraction, int pass, void *ctx);

/* Open and replay the capture at path.  PM_ENOTFOUND / PM_EPERM / PM_EFORMAT
 * (with a message naming the file), PM_ENOMEM. */
int replay_run(const char *path, struct replay *r, replay_progress_fn progress, void *ctx,
               struct pm_error *err);
/* The same over a capture already in memory (tests, fuzzing). */
int replay_buffer(const uint8_t *buf, size_t len, struct replay *r, struct pm_error *err);
void replay_free(struct replay *r);

#endif
